"""Which CPython regression modules ``picoproc bench compat`` runs."""

from __future__ import annotations

# The modules the compatibility target is stated over: the OS-facing core
# (files, processes, signals, threads, I/O multiplexing, time, terminals,
# servers on loopback).
DEFAULT_MODULES = (
    "test_os", "test_posix", "test_shutil", "test_tempfile", "test_subprocess", "test_signal",
    "test_select", "test_selectors", "test_fcntl", "test_mmap", "test_pty", "test_threading",
    "test_thread", "test_fork1", "test_wait4", "test_time", "test_io", "test_pathlib", "test_glob",
    "test_tarfile", "test_logging", "test_epoll", "test_poll", "test_resource", "test_httpservers",
    "test_eintr", "test_faulthandler", "test_cmd_line_script", "test_concurrent_futures",
    "test_asyncio",
)

# ``--all``: the default list and more modules that exercise the OS: sockets
# and the servers built on them, multiprocessing in its three start methods,
# files and archives, the interpreter's own start-up and environment.
MORE_MODULES = (
    "test_socket", "test_socketserver", "test_ssl", "test_xmlrpc", "test_urllib2_localnet",
    "test_httplib", "test_ftplib", "test_smtplib", "test_poplib", "test_imaplib", "test_asyncore",
    "test_multiprocessing_fork", "test_multiprocessing_forkserver", "test_multiprocessing_spawn",
    "test_multiprocessing_main_handling", "test_fileio", "test_fileinput", "test_filecmp",
    "test_stat", "test_genericpath", "test_posixpath", "test_zipfile", "test_mailbox",
    "test_dbm_dumb", "test_sys", "test_sysconfig", "test_platform", "test_pwd", "test_grp",
    "test_ioctl", "test_uuid", "test_largefile", "test_popen", "test_site", "test_cmd_line",
    "test_compileall", "test_threadsignals", "test_threadedtempfile", "test_timeout",
    "test_wsgiref", "test_runpy", "test_file_eintr", "test_queue", "test_openpty",
)
ALL_MODULES = DEFAULT_MODULES + MORE_MODULES

# Rough native run times (seconds, the development VM), so that the longest
# modules start first and parallel jobs end together.  Unlisted: short.
EXPECTED_SECONDS = {
    "test_asyncio": 200, "test_multiprocessing_spawn": 300, "test_multiprocessing_forkserver": 250,
    "test_multiprocessing_fork": 200, "test_concurrent_futures": 150, "test_socket": 90,
    "test_subprocess": 90, "test_signal": 60, "test_io": 60, "test_logging": 60,
    "test_threading": 40, "test_os": 30, "test_tarfile": 30, "test_eintr": 30,
    "test_faulthandler": 30, "test_cmd_line_script": 30, "test_ssl": 30, "test_httpservers": 20,
    "test_compileall": 20, "test_time": 20, "test_zipfile": 20, "test_mailbox": 20,
}
