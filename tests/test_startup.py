"""Start-up: what a run derives from picoproc's own files (the seccomp filter
of the ABI table, the parsed default manifest) is computed once and then read
from a cache kept like bytecode (picoproc.cache), and a CLI run imports no
TOML parser and does not parse the ABI table.  Timings are never asserted
here (docs/PERFORMANCE.md reports them); what is asserted is that the cached
results are the very results, that a stale or damaged cache is never used,
and what a run imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from picoproc import cache, manifest
from picoproc.abi import bpf, compiled
from picoproc.abi.table import load_table

pytestmark = pytest.mark.unit


def _env() -> dict:
    # Bytecode (and so these caches) written, as in an installed package.
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def test_call_names_from_the_loop_are_the_tables():
    from picoproc.monitor import CALL_NAMES

    assert CALL_NAMES == {m.index: m.name for m in load_table().mediated}


@pytest.mark.parametrize("mode", ["raw", "libos"])
def test_cached_filter_is_the_compiled_filter(mode):
    assert compiled.filter_for(mode) == bpf.compile_filter(load_table(), mode)


def test_a_damaged_cached_filter_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    module = tmp_path / "mod.py"
    module.write_text("")
    key = cache.content_key([b"x"])
    cache.store(str(module), "seccomp-raw", key, ".bpf", b"picoproc-bpf\n" + b"\0" * 16)
    assert cache.load(str(module), "seccomp-raw", key, ".bpf", compiled._decode) == b"\0" * 16
    # Cut short (not a whole instruction), or not a filter at all: ignored.
    path = tmp_path / "__pycache__" / f"seccomp-raw.{key}.bpf"
    path.write_bytes(b"picoproc-bpf\n" + b"\0" * 12)
    assert cache.load(str(module), "seccomp-raw", key, ".bpf", compiled._decode) is None
    path.write_bytes(b"#!/bin/sh\n")
    assert cache.load(str(module), "seccomp-raw", key, ".bpf", compiled._decode) is None
    # Another key (the table changed): not found.
    assert cache.load(str(module), "seccomp-raw", cache.content_key([b"y"]), ".bpf", compiled._decode) is None


def test_store_replaces_older_keys_and_respects_dont_write_bytecode(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    module = tmp_path / "mod.py"
    module.write_text("")
    cache.store(str(module), "thing", "a" * 32, ".bin", b"1")
    cache.store(str(module), "thing", "b" * 32, ".bin", b"2")
    assert sorted(os.listdir(tmp_path / "__pycache__")) == [f"thing.{'b' * 32}.bin"]
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache.store(str(module), "thing", "c" * 32, ".bin", b"3")
    assert sorted(os.listdir(tmp_path / "__pycache__")) == [f"thing.{'b' * 32}.bin"]


def test_cached_default_manifest_is_the_parsed_one():
    text = manifest.DEFAULT_MANIFEST_PATH.read_text()
    fresh = manifest.parse_manifest(text, "<default manifest>", base_dir="/", host_env={})
    assert manifest.default_manifest() == fresh
    assert manifest.default_manifest() == fresh  # a second time (from the cache, if it may be written)


def test_cached_default_manifest_is_refused_once_the_host_changed(tmp_path):
    """The default manifest depends on the host (optional mounts, symlinks
    resolved): a cached parse whose host probes no longer hold is not used."""
    import marshal

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    plain = manifest._to_plain(manifest.Manifest(mounts=(manifest.Mount("/x", str(tmp_path / "real")),)))
    manifest._PLAIN_CLASSES.update({c.__name__: c for c in (manifest.Mount, manifest.Tmpfs, manifest.Endpoint,
                                                            manifest.Limits, manifest.Manifest)})
    probes = (("realpath", str(tmp_path / "link"), str(tmp_path / "real")),
              ("exists", str(tmp_path / "optional"), False))
    good = marshal.dumps((probes, plain))
    assert manifest._cached_default(good).mounts[0].host == str(tmp_path / "real")
    (tmp_path / "optional").mkdir()  # an optional mount's host path appeared
    with pytest.raises(ValueError):
        manifest._cached_default(good)
    (tmp_path / "optional").rmdir()
    (tmp_path / "link").unlink()
    (tmp_path / "other").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "other")  # the symlink now points elsewhere
    with pytest.raises(ValueError):
        manifest._cached_default(good)
    with pytest.raises(ValueError):
        manifest._cached_default(marshal.dumps(((), ["NoSuchClass", 1])))


def test_the_default_manifest_records_what_it_read_of_the_host():
    manifest._host_probes.log = probes = []
    try:
        m = manifest.parse_manifest(manifest.DEFAULT_MANIFEST_PATH.read_text(), base_dir="/", host_env={})
    finally:
        manifest._host_probes.log = None
    resolved = {real for kind, _, real in probes if kind == "realpath"}
    assert {mount.host for mount in m.mounts} <= resolved
    assert any(kind == "exists" for kind, _, _ in probes)  # the optional mounts


def test_hidden_name_patterns_match_as_fnmatch_does():
    import fnmatch

    patterns = ["id_rsa", "*.key", ".ssh", "*", "*a", "a*", "?x", "[ab]c", "*.p12", "*[.]pfx", "\\*"]
    names = ["id_rsa", "id_rsa.pub", "a.key", ".key", "key", ".ssh", "x", "ab", "bc", "a", "x.p12", "b.pfx",
             "*", "[ab]c"]
    for p in patterns:
        for n in names:
            assert manifest.hidden_name_matches(p, f"/d/{n}/e") == fnmatch.fnmatchcase(n, p), (p, n)


_AS_THE_COMMAND = r"""
import marshal, sys
from importlib.machinery import ModuleSpec, SourceFileLoader
paths, packages = marshal.loads(bytes.fromhex(sys.argv[1]))
sys.path.extend(paths)
class Finder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        where = packages.get(name)
        if where is None:
            return None
        init = where + "/__init__.py"
        spec = ModuleSpec(name, SourceFileLoader(name, init), origin=init, is_package=True)
        spec.submodule_search_locations.append(where)
        spec.has_location = True
        return spec
sys.meta_path.append(Finder)
"""

_WHAT_WAS_IMPORTED = r"""
interpreter = set(sys.modules)
from picoproc.cli import main
at_import = sorted(sys.modules)
status = main(["run", "--", "/bin/true"])
modules = sorted(sys.modules)
import json
print(json.dumps({"status": status, "modules": sorted(set(modules) - interpreter),
                  "at_import": sorted(set(at_import) - interpreter)}))
"""


def _run_as_the_command(code: str) -> subprocess.CompletedProcess:
    """``code`` in a Python started as the picoproc command starts it
    (sandbox/bin/picoproc): -S, with this interpreter's sys.path and the
    package's folders (an editable install's), so that nothing the site
    module's hooks load hides what the run itself imports."""
    import marshal

    import picoproc
    import picoproc.abi
    import picoproc.bench
    import picoproc.libos

    packages = {m.__name__: m.__path__[0] for m in (picoproc, picoproc.abi, picoproc.libos, picoproc.bench)}
    paths = [p for p in sys.path if p and os.path.isabs(p)]
    return subprocess.run([sys.executable, "-S", "-c", _AS_THE_COMMAND + code,
                           marshal.dumps((paths, packages)).hex()],
                          capture_output=True, text=True, timeout=120, env=_env(), cwd="/")


@pytest.mark.root
def test_a_cli_run_parses_no_toml_and_no_abi_table_and_loads_no_benchmarks():
    runs = [_run_as_the_command(_WHAT_WAS_IMPORTED) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    second = json.loads(runs[1].stdout.splitlines()[-1])
    assert second["status"] == 0
    modules = set(second["modules"])
    # The caches written by the first run (or earlier) serve the second.
    for unwanted in ("tomllib", "picoproc.abi.table", "picoproc.abi.bpf", "pickle", "difflib", "hashlib",
                     "ctypes.util", "fractions", "picoproc.bench", "picoproc.bench.soak"):
        assert unwanted not in modules, unwanted
    # Neither importing the CLI nor the whole run needs the dataclass
    # machinery (and through it inspect, ast, dis, tokenize), typing (its
    # names serve annotations only), the help formatter's shutil, pathlib,
    # ipaddress (a run without network grants), nor the standard library's
    # parsers.
    for unwanted in ("dataclasses", "inspect", "ast", "dis", "tokenize", "typing", "shutil", "json", "copy",
                     "pathlib", "ipaddress", "urllib.parse"):
        assert unwanted not in modules, unwanted
    # Nor subprocess with its locale and selectors (check=True's exceptions,
    # picoproc.runerror, are imported when one is raised), ctypes (the
    # signalfd comes from the C module), gettext (there is no catalogue for
    # argparse's messages), queue (SimpleQueue is _queue's) or importlib.util.
    for unwanted in ("subprocess", "selectors", "locale", "ctypes", "gettext", "queue", "heapq",
                     "importlib.util", "picoproc.runerror"):
        assert unwanted not in modules, unwanted
    # Importing the CLI loads neither the run's own machinery (the Python
    # API, the native module, the manifest's parsing of host state) nor
    # anything for other commands.
    at_import = set(second["at_import"])
    for unwanted in ("picoproc.api", "picoproc.spawn", "picoproc.monitor", "picoproc._native", "_cffi_backend",
                     "picoproc.trace", "picoproc.learn", "picoproc.doctor", "picoproc.backends", "tomllib"):
        assert unwanted not in at_import, unwanted


@pytest.mark.root  # starts a Python process
def test_a_record_needs_no_dataclasses_until_asked_to_be_one():
    """picoproc's types are records (picoproc.records): dataclasses is
    imported only when something treats one as a dataclass."""
    code = ("import sys\nfrom picoproc.manifest import default_manifest\nm = default_manifest()\n"
            "assert 'dataclasses' not in sys.modules\n"
            "import dataclasses\nassert dataclasses.replace(m, cwd='/tmp').cwd == '/tmp'\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_run_takes_subprocess_constants_without_importing_subprocess():
    from picoproc import api

    assert (api._PIPE, api._STDOUT, api._DEVNULL) == (subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL)
    # check=True's exceptions are still where they were, and subprocess's.
    from picoproc.api import RunError, RunTimeout
    from picoproc.result import RunError as ResultsRunError

    assert RunError is ResultsRunError and issubclass(RunTimeout, subprocess.TimeoutExpired)


_ARGPARSE_WITHOUT_GETTEXT = r"""
import sys
import picoproc.cli
assert "gettext" not in sys.modules, "the stand-in stayed"
import argparse
p = argparse.ArgumentParser(prog="x", exit_on_error=False)
p.add_argument("--pair", nargs=2)
try:
    p.parse_args(["--pair", "a"])
except argparse.ArgumentError as exc:
    print(exc)
import gettext
assert hasattr(gettext, "translation") and gettext.gettext("x") == "x"
"""


@pytest.mark.root  # starts a Python process
def test_argparse_imported_without_gettext_still_words_its_messages():
    r = _run_as_the_command(_ARGPARSE_WITHOUT_GETTEXT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "argument --pair: expected 2 arguments\n"


_ENDS_AFTER_A_RUN = r"""
import atexit, sys
atexit.register(lambda: print("atexit ran", flush=True))
sys.argv = ["picoproc", "run", "--", "/bin/sh", "-c", "exit 9"]
from picoproc.cli import console_main
sys.stdout.write("buffered, not flushed; ")
console_main()
print("console_main returned")
"""


@pytest.mark.root  # starts a Python process
def test_the_command_ends_after_a_run_with_its_status_buffers_flushed_and_atexit_run():
    """console_main ends the process itself after `run` (no interpreter
    teardown): the run's status, what was buffered on stdout, the atexit
    handlers, and nothing after it."""
    r = _run_as_the_command(_ENDS_AFTER_A_RUN)
    assert r.returncode == 9, r.stderr
    assert r.stdout == "buffered, not flushed; atexit ran\n"
