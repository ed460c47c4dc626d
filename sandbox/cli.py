"""The ``picoproc`` command line: a thin layer over the Python API.

Every user error ends in one line on stderr naming the problem, never a
traceback.  ``picoproc run`` exits with the program's own status, or with
one of picoproc's own, which follow ``docker run`` and ``timeout(1)`` so they
are not mistaken for the program's (picoproc.result lists them; so does
``picoproc run --help``).
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from picoproc.errors import PicoprocError
from picoproc.manifest import add_cli_options
from picoproc.result import (
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    EXIT_OTHER_LIMIT,
    EXIT_PICOPROC_ERROR,
    LIMIT_EXIT_STATUS,
    Result,
)


def _argparse():
    """argparse, imported without gettext when nothing has imported gettext
    yet.  argparse asks gettext for a translation of each of its messages,
    and the standard library ships none: importing gettext (and its locale)
    and searching for catalogues on every run only costs time.  The stand-in
    is gone from sys.modules afterwards, so whatever imports gettext later
    gets the real module."""
    if "argparse" in sys.modules or "gettext" in sys.modules:
        import argparse

        return argparse
    stub = type(sys)("gettext")
    stub.gettext = lambda message: message
    stub.ngettext = lambda singular, plural, n: singular if n == 1 else plural
    sys.modules["gettext"] = stub
    try:
        import argparse
    except ImportError:  # an argparse that wants more of gettext: the real one
        argparse = None
    finally:
        if sys.modules.get("gettext") is stub:
            del sys.modules["gettext"]
    if argparse is None:
        import argparse
    return argparse


argparse = _argparse()

EXIT_USAGE = EXIT_PICOPROC_ERROR  # usage errors are picoproc's own failures (docker run: 125)
EXIT_CANNOT_RUN = EXIT_NOT_FOUND  # older name

EXIT_STATUS_HELP = f"""\
exit status:
  N         the program exited with status N
  128+N     the program died of signal N (e.g. 137: SIGKILL, 143: SIGTERM)
  {LIMIT_EXIT_STATUS['wall_time']}       the wall-time limit ended the run (--timeout; as timeout(1))
  {LIMIT_EXIT_STATUS['output']}       the output limit was reached (--output-limit)
  {LIMIT_EXIT_STATUS['cpu_time']}       the CPU-time limit ended the run (--cpu-time)
  {LIMIT_EXIT_STATUS['memory']}       the memory limit ended the run (--memory; OOM kill)
  {LIMIT_EXIT_STATUS['pids']}       the process-count limit refused a fork (--pids)
  {EXIT_OTHER_LIMIT}       another limit ended the run
  {EXIT_PICOPROC_ERROR}       picoproc itself failed: bad usage, manifest or flag; internal error
  {EXIT_CANNOT_EXECUTE}       the program cannot be executed (permission, directory, noexec mount)
  {EXIT_NOT_FOUND}       the program was not found
A limit's status is used even when the program exited by itself after it
(e.g. output cut at the limit); --json FILE has the program's own status.

signals: SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to
picoproc are passed to the program (a terminal's own Ctrl-C reaches it
directly); --stop-timeout after a stop signal (default 10 s, as docker stop;
not after a terminal's Ctrl-C) the run is killed.
"""


class UsageError(PicoprocError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and raise instead of exiting."""

    # argparse builds a help formatter for every add_argument (to check a
    # metavar against nargs) and for add_subparsers (to name the sub-parsers'
    # prog); by default a formatter asks shutil for the terminal's width, and
    # importing shutil is a sizeable part of a short run's start-up.  Text
    # that is shown (help, usage) gets the default formatter; the rest a
    # formatter whose width no one sees.
    _showing = False

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    def _get_formatter(self):
        if self._showing:
            return super()._get_formatter()
        return self.formatter_class(prog=self.prog, width=_UNSHOWN_WIDTH)

    def format_usage(self) -> str:
        return self._shown(super().format_usage)

    def format_help(self) -> str:
        return self._shown(super().format_help)

    def _shown(self, format_text) -> str:
        self._showing = True
        try:
            return format_text()
        finally:
            self._showing = False


# The width of a formatter whose text is never shown; large, so that a prog
# name computed with it is never wrapped.
_UNSHOWN_WIDTH = 1 << 16


def _version() -> str:
    from picoproc import __version__
    from picoproc.abi import load_table

    return f"picoproc {__version__} (ABI v{load_table().version})"


# --------------------------------------------------------------------------
# picoproc abi


def _lookup(names: list[str], rows: list[dict], key_nr: str = "nr") -> list[dict]:
    """The rows named (by name or number); UsageError naming the unknown ones."""
    by_name = {r["name"]: r for r in rows}
    by_nr = {r[key_nr]: r for r in rows}
    out = []
    for name in names:
        if name.isdigit() and int(name) in by_nr:
            out.append(by_nr[int(name)])
        elif name in by_name:
            out.append(by_name[name])
        else:
            import difflib

            close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"picoproc abi: no system call named {name!r}{hint}")
    return out


def _direct_in_words() -> dict[str, str]:
    from picoproc.abi import load_table
    from picoproc.abi.describe import rules_in_words

    table = load_table()
    return {d.name: rules_in_words(d, table) for d in table.direct}


def _linux_row_text(r: dict, words: dict[str, str], with_note: bool = True) -> str:
    """How one row of linux_table() is handled, in words (with what is missing
    when its support is partial, unless with_note is false).  Reads only the
    documented row keys, with .get: the table's generator may add more."""
    handling = r.get("handling")
    text = ""
    if handling == "mediated":
        text = "via the mediated " + ", ".join(r.get("mediated") or ())
    elif handling == "refused":
        text = f"{r.get('errno') or 'not reachable'} ({r.get('by', '')})"
    elif handling == "direct" and r.get("rules"):
        text = "when " + words.get(r["name"], " or ".join(r["rules"]))
    if with_note and r.get("support") == "partial" and r.get("note"):
        # What is missing (libos/linux_calls.toml).
        text = (text + "; " if text else "") + "partial: " + r["note"]
    return text


def _cmd_abi_linux(args) -> int:
    """How picoproc handles every x86-64 Linux syscall (gVisor's linux64.go style)."""
    import json

    from picoproc.libos import linux_table

    rows = linux_table()
    if args.names:
        rows = _lookup(args.names, rows)
    words = _direct_in_words()
    if args.json:
        for r in rows:
            if r.get("handling") == "direct" and r["name"] in words:
                r["rules_in_words"] = words[r["name"]]
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    if args.names:
        for r in rows:
            support = r.get("support")
            print(f"{r['name']} ({r['nr']}): {r.get('handling')}" +
                  (f", {support}" if support and support != r.get("handling") else "") +
                  (f", by the {r['by']}" if r.get("by") else ""))
            how = _linux_row_text(r, words, with_note=False)
            if how:
                print(f"  {how}")
            if r.get("note"):
                print(f"  {'partial: ' if support == 'partial' else ''}{r['note']}")
        return 0
    from picoproc.libos.generate import summary

    n = summary(rows)
    print(f"{n['total']} x86-64 Linux syscalls: {n['direct']} direct, "
          f"{n['full'] + n['partial']} handled by the library OS ({n['full']} full, {n['partial']} partial), "
          f"{n['refused']} refused on purpose, {n['unimplemented']} not implemented (ENOSYS, audited)")
    for r in rows:
        print(f"  {r['nr']:4d} {r['name']:24s} {r.get('handling', '?'):9s} {r.get('support', ''):13s} "
              f"{_linux_row_text(r, words)}".rstrip())
    return 0


def _cmd_abi(args) -> int:
    import json

    from picoproc.abi import load_table

    if args.linux:
        return _cmd_abi_linux(args)
    table = load_table()
    words = _direct_in_words()
    calls = (
        [{"name": d.name, "nr": d.nr, "kind": "direct", "group": d.group,
          "constraints": [r.text for r in d.rules], "rules_in_words": words[d.name], "why": d.why}
         for d in table.direct]
        + [{"name": e.name, "nr": e.nr, "kind": "errno", "errno": e.errno_name,
            "constraints": [], "why": e.why}
           for e in table.errno_calls]
        + [{"name": m.name, "nr": m.nr, "kind": "mediated",
            "args": [{"name": a.name, "type": a.ctype, "doc": a.doc} for a in m.args],
            "result": m.result, "errors": list(m.errors), "constraints": [], "why": m.purpose}
           for m in table.mediated]
    )
    if args.names:
        calls = _lookup(args.names, calls)
    if args.json:
        doc = {
            "version": table.version,
            "mediated_base": table.mediated_base,
            "loader_fd": table.loader_fd,
            "direct_count": len(table.direct),
            "calls": calls,
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    if args.names:
        for c in calls:
            print(f"{c['name']} ({c['nr']}): {c['kind']}")
            if c["kind"] == "direct":
                print(f"  allowed when {c['rules_in_words']}")
            elif c["kind"] == "errno":
                print(f"  always answered {c['errno']}")
            else:
                print(f"  ({', '.join(a['name'] for a in c['args'])}) -> {c['result']}")
            print(f"  {c['why']}")
        return 0
    print(f"picoproc ABI v{table.version}: {len(table.direct)} direct, "
          f"{len(table.errno_calls)} errno, {len(table.mediated)} mediated "
          f"(base {table.mediated_base}); everything else traps (or kills in raw mode)")
    from picoproc.abi.describe import rules_in_words

    for d in table.direct:
        print(f"  direct    {d.nr:4d} {d.name:16s} {rules_in_words(d, table, brief=True)}")
    for e in table.errno_calls:
        print(f"  errno     {e.nr:4d} {e.name:16s} -> {e.errno_name}")
    for m in table.mediated:
        sig = ", ".join(a.name for a in m.args)
        print(f"  mediated  {m.nr:4d} {m.name:16s} ({sig})")
    return 0


def _cmd_doctor(args) -> int:
    from picoproc.doctor import report

    return report(sys.stdout, sys.stderr, as_json=args.json)


# --------------------------------------------------------------------------
# picoproc manifest


def _cmd_manifest(args) -> int:
    from picoproc.manifest import ManifestError, manifest_from_cli_args, manifest_to_toml

    try:
        manifest = manifest_from_cli_args(args)
    except ManifestError as exc:
        print(f"picoproc: {exc}{_manifest_hint(exc)}", file=sys.stderr)
        return EXIT_PICOPROC_ERROR
    sys.stdout.write(manifest_to_toml(manifest))
    return 0


def _manifest_hint(exc) -> str:
    if exc.key in ("--volume", "--mount") and "does not exist" in exc.reason:
        return " (host paths are relative to the current directory)"
    return ""


# --------------------------------------------------------------------------
# picoproc run


def _stop_timeout(text: str) -> float:
    from picoproc.manifest import parse_duration

    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--stop-timeout: {exc}") from None


def _fail(args, status: int, message: str) -> int:
    """A run that never started: one line, the JSON result, the status."""
    print(f"picoproc: {message}", file=sys.stderr)
    if getattr(args, "json", None):
        result = Result.failed_start(args.command or [], getattr(args, "backend", "pico"), status,
                                     message, mode=_mode(args))
        _write_json(args.json, result.to_json())
    return status


def _error_line(exc: PicoprocError) -> str:
    """``exc`` as one line: an OSError's message without its "[Errno N]"."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _mode(args) -> str | None:
    if getattr(args, "backend", "pico") != "pico":
        return None
    return "raw" if getattr(args, "raw", False) else "libos"


def _extends_default(path: str) -> bool:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f).get("extends") == "default"
    except (OSError, ValueError):
        return True  # unreadable here: no hint rather than a wrong one


def _not_found_hints(args, manifest) -> str:
    """What a user who typed this probably needs to know."""
    prog = args.command[0]
    hints = []
    here = os.getcwd()
    if not prog.startswith("/") and os.path.exists(os.path.join(here, prog)):
        shown = any(m.host == here or here.startswith(m.host.rstrip("/") + "/")
                    for m in manifest.mounts)
        if not shown:
            hints.append(f"your current directory {here} is not mounted in the guest (its working "
                         f"directory is {manifest.cwd}); to run {prog} from it: "
                         f"-v \"$PWD\":/work -w /work")
    if getattr(args, "manifest", None) and not _extends_default(args.manifest):
        hints.append(f"{args.manifest} does not say extends = \"default\", so the guest sees only "
                     "its mounts; add that line to start from the default's system directories")
    return "".join(f"\n  hint: {h}" for h in hints)


def _cmd_run(args) -> int:
    from picoproc.manifest import ManifestError, manifest_from_cli_args

    if not args.command:
        raise UsageError("picoproc run: no program given (usage: picoproc run [options] -- PROG [ARGS...])")
    try:
        manifest = manifest_from_cli_args(args)
    except ManifestError as exc:
        return _fail(args, EXIT_PICOPROC_ERROR, f"{exc}{_manifest_hint(exc)}")
    if args.backend != "pico":
        return _run_with_backend(args, manifest)
    result = _run_pico(args, manifest)
    if isinstance(result, int):
        return result
    if args.json:
        _write_json(args.json, result.to_json(output=False))
    _print_run_warnings(result)
    if result.signal is not None or result.limit is not None:
        print(f"picoproc: {args.command[0]}: {result.reason}", file=sys.stderr)
    if not args.quiet:
        _print_end_of_run_notes(manifest, result)
    return result.exit_status


def _print_run_warnings(result) -> None:
    if result.audit_error:
        print(f"picoproc: {result.audit_error}; later records were not written", file=sys.stderr)
    if result.cleanup_error:
        print(f"picoproc: warning: {result.cleanup_error}", file=sys.stderr)


def _run_pico(args, manifest, audit=None, **sandbox_options):
    """Runs args.command under the pico backend: the Result, or the exit
    status of a run that could not start (its message already printed).
    ``audit``: a callable given the run's audit records (instead of
    --audit FILE)."""
    from picoproc.api import ProgramNotExecutable, ProgramNotFound, Sandbox, SandboxError
    from picoproc.image import ImageError
    from picoproc.monitor import MonitorError
    from picoproc.spawn import ConfigError, SpawnError

    try:
        audit_limit = _audit_limit(getattr(args, "audit_limit", None))
    except ValueError as exc:
        return _fail(args, EXIT_USAGE, f"--audit-limit: {exc}")
    try:
        sandbox = Sandbox(manifest, raw=getattr(args, "raw", False),
                          audit=args.audit if audit is None else audit, user=args.user,
                          audit_limit=audit_limit, **sandbox_options)
        return sandbox.run(args.command, stdin=0, forward_signals=True,
                           stop_timeout=args.stop_timeout)
    except ProgramNotFound as exc:
        return _fail(args, EXIT_NOT_FOUND, f"{exc}{_not_found_hints(args, manifest)}")
    except ProgramNotExecutable as exc:
        return _fail(args, EXIT_CANNOT_EXECUTE, str(exc))
    except ImageError as exc:
        missing = "not found" in str(exc) or "No such file" in str(exc)
        return _fail(args, EXIT_NOT_FOUND if missing else EXIT_CANNOT_EXECUTE, f"cannot run {exc}")
    except (SandboxError, ConfigError) as exc:
        return _fail(args, EXIT_PICOPROC_ERROR, str(exc))
    except SpawnError as exc:
        return _fail(args, EXIT_PICOPROC_ERROR, f"could not start the picoprocess: {exc.strerror}")
    except (MonitorError, OSError) as exc:
        return _fail(args, EXIT_PICOPROC_ERROR, f"{exc.strerror or exc}")


def _print_end_of_run_notes(manifest, result) -> None:
    """What a user needs after a run that the policy got in the way of: the
    refusals with the rule and the flag that would grant each, the calls
    picoproc does not implement, a write the host's permissions refused."""
    report = result.denial_report()
    if report:
        print(report, file=sys.stderr)
    hint = _write_refusal_hint(manifest, result)
    if hint:
        print(f"picoproc: {hint}", file=sys.stderr)


def _audit_limit(text: str | None) -> int | None:
    from picoproc.manifest import parse_size
    from picoproc.monitor import AUDIT_FILE_LIMIT, AUDIT_FILE_MIN_LIMIT

    if text is None:
        return AUDIT_FILE_LIMIT
    if text.strip().lower() in ("none", "unlimited"):
        return None
    size = parse_size(text)  # ValueError names the problem
    if size < AUDIT_FILE_MIN_LIMIT:
        raise ValueError(f"must be at least {AUDIT_FILE_MIN_LIMIT} bytes (got {text})")
    return size


# --------------------------------------------------------------------------
# picoproc trace / learn


def _traced_run(args, manifest, any_host_network: bool = False):
    """Runs args.command traced: (Result, Profile), or an exit status.  The
    profile is built from the audit records as they come (a run keeps only
    its first records in memory); --audit FILE gets them too."""
    from picoproc.monitor import AuditJsonlWriter
    from picoproc.trace import ProfileBuilder

    if not args.command:
        raise UsageError(f"picoproc {args.cmd}: no program given (usage: picoproc {args.cmd} "
                         "[options] -- PROG [ARGS...])")
    try:
        audit_limit = _audit_limit(getattr(args, "audit_limit", None))
    except ValueError as exc:
        return _fail(args, EXIT_USAGE, f"--audit-limit: {exc}")
    builder = ProfileBuilder(manifest, any_host_network)
    received = [0]
    writer = None
    if args.audit:
        try:
            writer = AuditJsonlWriter(args.audit, audit_limit)
        except OSError as exc:
            return _fail(args, EXIT_PICOPROC_ERROR, f"--audit {args.audit}: {exc.strerror}")

    def sink(records) -> None:
        records = list(records)
        received[0] += len(records)
        builder.add(records)
        if writer is not None:
            writer(records)

    try:
        result = _run_pico(args, manifest, audit=sink, trace=True,
                           any_host_network=any_host_network)
    finally:
        if writer is not None:
            writer.close()
    if isinstance(result, int):
        return result
    if writer is not None and writer.error:
        result.audit_error = writer.error
    _print_run_warnings(result)
    if result.signal is not None or result.limit is not None:
        print(f"picoproc: {args.command[0]}: {result.reason}", file=sys.stderr)
    # Every call served leaves one record: fewer received means the monitor
    # dropped some (its ring was full), and the profile misses them.
    served = (result.counts or {}).get("mediated") or 0
    return result, builder.finish(result, audit_dropped=received[0] < served)


def _write_text(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open(target, "w") as f:
        f.write(text)


def _cmd_trace(args) -> int:
    from picoproc.manifest import ManifestError, manifest_from_cli_args
    from picoproc.trace import format_profile

    try:
        manifest = manifest_from_cli_args(args)
    except ManifestError as exc:
        return _fail(args, EXIT_PICOPROC_ERROR, f"{exc}{_manifest_hint(exc)}")
    ran = _traced_run(args, manifest)
    if isinstance(ran, int):
        return ran
    result, profile = ran
    try:
        if args.profile_json:
            _write_json_out(args.profile_json, profile.to_json())
        text = format_profile(profile, verbose=args.all)
        if args.output == "-":
            sys.stderr.write(text)
        else:
            _write_text(args.output, text)
    except OSError as exc:
        print(f"picoproc trace: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_PICOPROC_ERROR
    return result.exit_status


def _write_json_out(target: str, doc: dict) -> None:
    """JSON to a file, or to stdout for '-' (the program's own output is over)."""
    import json

    text = json.dumps(doc, indent=2, default=str) + "\n"
    _write_text(target, text)


def learning_manifest(args):
    """The manifest a learning run gets: the default's system directories
    (or --manifest FILE) with the run options on top, and always the
    default's hidden secrets."""
    from picoproc.manifest import apply_overrides, default_manifest, manifest_from_cli_args

    manifest = manifest_from_cli_args(args)
    default = default_manifest()
    missing_paths = [h for h in default.hidden if h not in manifest.hidden]
    missing_names = [n for n in default.hidden_names if n not in manifest.hidden_names]
    if missing_paths or missing_names:
        manifest = apply_overrides(manifest, hide=missing_paths, hide_names=missing_names)
    return manifest


def _cmd_learn(args) -> int:
    import json

    from picoproc.learn import DEFAULT_MARGIN, LearnError, learn_manifest
    from picoproc.manifest import ManifestError
    from picoproc.trace import Profile

    profiles = []
    for path in args.traces:
        try:
            with open(path) as f:
                profiles.append(Profile.from_json(json.load(f), path))
        except OSError as exc:
            raise UsageError(f"picoproc learn: --from {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"picoproc learn: --from {exc}") from None
    status = 0
    if args.command:
        try:
            manifest = learning_manifest(args)
        except ManifestError as exc:
            return _fail(args, EXIT_PICOPROC_ERROR, f"{exc}{_manifest_hint(exc)}")
        ran = _traced_run(args, manifest, any_host_network=args.allow_net)
        if isinstance(ran, int):
            return ran
        result, profile = ran
        profiles.append(profile)
        status = result.exit_status
        if args.save_trace:
            _write_json_out(args.save_trace, profile.to_json())
        report = result.denial_report()
        if report and not args.quiet:
            print(report.replace("picoproc: the manifest refused", "picoproc learn: the learning "
                                 "manifest refused", 1), file=sys.stderr)
        if status:
            print(f"picoproc learn: {args.command[0]} {result.reason} while learning; the manifest "
                  "reproduces that run", file=sys.stderr)
    elif not profiles:
        raise UsageError("picoproc learn: give a program to run (-- PROG [ARGS...]) or --from TRACE")
    try:
        learned = learn_manifest(profiles, margin=args.margin if args.margin else DEFAULT_MARGIN)
    except LearnError as exc:
        print(f"picoproc learn: {exc}", file=sys.stderr)
        return EXIT_PICOPROC_ERROR
    try:
        _write_text(args.output, learned.toml)
    except OSError as exc:
        print(f"picoproc learn: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_PICOPROC_ERROR
    if not args.quiet:
        rw = sum(1 for m in learned.mounts if m.writable)
        grants = len(learned.connect) + len(learned.listen) + len(learned.unix)
        where = "" if args.output == "-" else f" to {args.output}"
        print(f"picoproc learn: wrote the manifest{where}: {len(learned.mounts)} mounts ({rw} "
              f"writable), {len(learned.tmpfs)} tmpfs, {grants} network grant"
              f"{'s' if grants != 1 else ''}, from {len(profiles)} run"
              f"{'s' if len(profiles) != 1 else ''}", file=sys.stderr)
    return status


# Calls that change the file system: a refusal of one on a writable mount is
# the host's permissions, not the manifest.
_WRITING_CALLS = {"mkdir", "unlink", "rename", "symlink", "link", "chmod", "chown", "utimens",
                  "truncate"}


def _writes(record: dict) -> bool:
    if record.get("call") in _WRITING_CALLS:
        return True
    flags = record.get("arg", 0)
    return record.get("call") == "open" and isinstance(flags, int) and bool(flags & 0o1103)


def _write_refusal_hint(manifest, result) -> str | None:
    """When the host's permissions refused a write on a writable mount, one
    line saying which: the owner and mode of the host directory or file, and
    whom the guest ran as."""
    from picoproc.mounttable import MountTable

    table = MountTable.of(manifest)
    refused = []
    for rec in result.audit:
        if rec.get("errno") not in (errno.EACCES, errno.EPERM) or not _writes(rec):
            continue
        path = rec.get("path") or (rec.get("uri") or "").removeprefix("file:")
        mount = table.mount_of(path) if path.startswith("/") else None
        if mount is None or not getattr(mount, "writable", False):
            continue
        host = table.host_path(path)
        # The object refused: the file itself if it exists, else the directory
        # the name would be made in.
        target = host if os.path.lexists(host) and rec.get("call") != "mkdir" else os.path.dirname(host)
        refused.append((path, target))
    if not refused:
        return None
    path, target = refused[0]
    try:
        st = os.lstat(target)
    except OSError:
        return None
    who = result.identity or {}
    more = f" ({len(refused) - 1} more refusal{'s' if len(refused) > 2 else ''} like it)" \
        if len(refused) > 1 else ""
    return (f"{path}: write refused by host permissions: {target} is owned by "
            f"{st.st_uid}:{st.st_gid}, mode {stat.filemode(st.st_mode)}, and the program ran as "
            f"{who.get('uid')}:{who.get('gid')} ({who.get('why', '')}); make it writable for that "
            f"user, or run as its owner with --user UID[:GID]{more}")


def _write_json(target: str, doc: dict) -> None:
    import json

    text = json.dumps(doc, indent=2, default=str) + "\n"
    if target == "-":
        sys.stderr.write(text)
        return
    with open(target, "w") as f:
        f.write(text)


def _run_with_backend(args, manifest) -> int:
    """Runs the same manifest and command under a comparison backend."""
    from picoproc.backends import (
        BackendError,
        BackendUnavailable,
        ManifestNotExpressible,
        get_backend,
        run_with_backend,
    )

    if args.raw:
        raise UsageError("picoproc run: --raw applies to the pico backend only")
    if args.user is not None:
        raise UsageError("picoproc run: --user applies to the pico backend only")
    try:
        backend = get_backend(args.backend)
    except ValueError as exc:
        raise UsageError(f"picoproc run: {exc.args[0]}") from None
    try:
        result = run_with_backend(args.backend, manifest, args.command, capture=False,
                                  forward_signals=True, stop_timeout=args.stop_timeout)
    except (BackendUnavailable, ManifestNotExpressible, BackendError) as exc:
        return _fail(args, EXIT_PICOPROC_ERROR, str(exc))
    except FileNotFoundError as exc:
        return _fail(args, EXIT_NOT_FOUND, f"{exc.filename or args.command[0]}: not found")
    except PermissionError as exc:
        return _fail(args, EXIT_CANNOT_EXECUTE, f"{exc.filename or args.command[0]}: {exc.strerror}")
    if args.json:
        _write_json(args.json, result.to_json(output=False))
    # One line naming what this backend could not enforce of the manifest
    # (details: --json, docs/BACKENDS.md), so a user never mistakes it for picoproc.
    cannot = backend.cannot_express()
    unenforced = [n.split(":", 1)[0] for n in result.notes if n.split(":", 1)[0] in cannot]
    if unenforced:
        print(f"picoproc: backend {args.backend} does not enforce: {', '.join(unenforced)}", file=sys.stderr)
    if result.limit is not None:
        print(f"picoproc: {args.command[0]}: {result.reason}", file=sys.stderr)
    return result.exit_status


# --------------------------------------------------------------------------
# The parser


def _add_traced_run_options(parser) -> None:
    """The options of picoproc run that a traced run (trace, learn) takes too."""
    parser.add_argument("-u", "--user", metavar="UID[:GID]",
                        help="run as this host user (as root only; never 0), as picoproc run")
    parser.add_argument("--stop-timeout", type=_stop_timeout, default=10.0, metavar="S",
                        help="after passing a stop signal to the program, kill it S seconds later")
    parser.add_argument("--audit", metavar="FILE", help="write every mediated call's audit record (JSONL)")
    parser.add_argument("--audit-limit", metavar="SIZE",
                        help="most bytes the --audit file may take (default 64M; 'none': no bound)")


def _margin(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--margin: {text!r} is not a number") from None
    if not (1 <= value <= 1000):
        raise argparse.ArgumentTypeError(f"--margin: {text} must be between 1 and 1000")
    return value


def _add_run_parser(sub) -> None:
    run = sub.add_parser("run", help="run a program in a picoprocess",
                         usage="picoproc run [options] -- PROG [ARGS...]",
                         description="Run PROG as a picoprocess under the default manifest (or "
                         "--manifest FILE) with the flags below layered on top.",
                         epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--raw", action="store_true",
                     help="no library OS: a static program under the filter alone; any call outside the ABI kills it")
    run.add_argument("--backend", default="pico", metavar="NAME",
                     help="pico (default), or a comparison backend: native, container, bwrap, gvisor, ptrace, ...")
    run.add_argument("-u", "--user", metavar="UID[:GID]",
                     help="run as this host user (as root only; never 0); default as root: the owner "
                     "of the writable mounts if they have one owner, else nobody")
    run.add_argument("--stop-timeout", type=_stop_timeout, default=10.0, metavar="S",
                     help="after passing a stop signal (TERM, INT, HUP, QUIT) to the program, kill it "
                     "if it still runs S seconds later (default 10)")
    run.add_argument("--audit", metavar="FILE", help="write every mediated call's audit record (JSONL)")
    run.add_argument("--audit-limit", metavar="SIZE",
                     help="most bytes the --audit file may take (default 64M; 'none': no bound); "
                     "past it one last line says the file was cut")
    run.add_argument("--json", metavar="FILE",
                     help="write the result as JSON ('-' for stderr), also when the run cannot start")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="no summary on stderr of what the manifest refused and which calls "
                     "picoproc does not implement (--json still has it)")
    add_cli_options(run)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- PROG [ARGS...]")
    run.set_defaults(func=_cmd_run)


def _add_trace_parser(sub) -> None:
    trace = sub.add_parser("trace", help="run a program and profile what it asked for",
                           usage="picoproc trace [options] -- PROG [ARGS...]",
                           description="Run PROG as `picoproc run` would and write a profile of what "
                           "it asked for: files and directories by mount (read, written, created, "
                           "executed), network endpoints, programs executed, calls picoproc does "
                           "not implement, peaks of memory, tasks and scratch.",
                           epilog="exit status: the program's, as picoproc run's (see picoproc run "
                           "--help)")
    _add_traced_run_options(trace)
    trace.add_argument("-o", "--output", default="-", metavar="FILE",
                       help="write the profile to FILE (default: stderr, after the program's output)")
    trace.add_argument("--json", dest="profile_json", metavar="FILE",
                       help="write the profile as JSON ('-' for stdout); picoproc learn --from reads it")
    trace.add_argument("--all", action="store_true", help="list every path, not counts per directory")
    add_cli_options(trace)
    trace.add_argument("command", nargs=argparse.REMAINDER, help="-- PROG [ARGS...]")
    trace.set_defaults(func=_cmd_trace)


def _add_learn_parser(sub) -> None:
    learn = sub.add_parser("learn", help="write the narrowest manifest under which a program runs",
                           usage="picoproc learn [-o FILE] [--from TRACE ...] [--allow-net] "
                           "[options] [-- PROG [ARGS...]]",
                           description="Run PROG under a permissive learning manifest (the default's "
                           "read-only system directories and secrets, your mounts and flags, no "
                           "network unless --allow-net) and write the narrowest manifest that lets "
                           "the same run succeed, with a comment on each line saying why. Several "
                           "runs merge: --from TRACE reads profiles of picoproc trace --json (or "
                           "learn --save-trace).",
                           epilog="then: picoproc run --manifest FILE -- PROG ... (exit status: the "
                           "learning run's, as picoproc run's)")
    _add_traced_run_options(learn)
    learn.add_argument("-o", "--output", default="-", metavar="FILE",
                       help="write the manifest to FILE (default: stdout)")
    learn.add_argument("--from", dest="traces", action="append", default=[], metavar="TRACE",
                       help="also learn from this profile (picoproc trace --json); repeatable")
    learn.add_argument("--allow-net", action="store_true",
                       help="let the learning run connect to any host address (loopback stays the "
                       "program's own) and grant the endpoints it used")
    learn.add_argument("--margin", type=_margin, default=None, metavar="FACTOR",
                       help="limits and scratch sizes are the observed peaks times FACTOR (default 2)")
    learn.add_argument("--save-trace", metavar="FILE",
                       help="also write the learning run's profile as JSON, for a later --from")
    learn.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    add_cli_options(learn)
    learn.add_argument("command", nargs=argparse.REMAINDER, help="-- PROG [ARGS...]")
    learn.set_defaults(func=_cmd_learn)


def _add_manifest_parser(sub) -> None:
    manifest = sub.add_parser("manifest", help="print the effective manifest of a run as TOML",
                              usage="picoproc manifest [run's manifest options]",
                              description="Print, as TOML, the manifest `picoproc run` would use "
                              "with these options (the default or --manifest FILE, flags on top).")
    add_cli_options(manifest)
    manifest.set_defaults(func=_cmd_manifest)


def _add_abi_parser(sub) -> None:
    abi = sub.add_parser("abi", help="print the ABI table, or how Linux calls are handled")
    abi.add_argument("names", nargs="*", metavar="NAME",
                     help="only these calls (names or numbers), described in full")
    abi.add_argument("--json", action="store_true", help="machine-readable")
    abi.add_argument("--linux", action="store_true",
                     help="how every x86-64 Linux syscall is handled: direct, emulated, mediated or refused")
    abi.set_defaults(func=_cmd_abi)


def _add_doctor_parser(sub) -> None:
    doctor = sub.add_parser("doctor", help="probe kernel features and comparison backends")
    doctor.add_argument("--json", action="store_true", help="machine-readable")
    doctor.set_defaults(func=_cmd_doctor)


_COMMANDS = {"run": _add_run_parser, "trace": _add_trace_parser, "learn": _add_learn_parser,
             "manifest": _add_manifest_parser, "abi": _add_abi_parser, "doctor": _add_doctor_parser}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """``command``: the first argument, when known.  A command gets a
    parser with only its own sub-parser (the benchmark suites' imports and
    the other commands' parsers are most of a short run's parser); anything
    else (none, ``bench``, ``--help``, a typo) the whole parser."""
    parser = _Parser(prog="picoproc", description="Run untrusted Linux programs as picoprocesses.",
                     epilog="exit status of `picoproc run`: the program's own, 128+N for a signal, "
                     "124/123/122/121/120/119 for a limit, 125 picoproc's own failure, 126 cannot "
                     "execute, 127 not found (details: picoproc run --help)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    if command in _COMMANDS:
        # Parsing one command's arguments needs only its own parser: the
        # others' are only seen in `picoproc --help` and in an unknown
        # command's error, and then the command is not one of these.
        _COMMANDS[command](sub)
        return parser
    for add in _COMMANDS.values():
        add(sub)

    # picoproc bench surface|security|perf|compat: the suites live in benchmarks/
    # (picoproc.bench) and register their own parsers.  A copy of picoproc
    # without them (e.g. only the monitor) still runs everything else.
    try:
        from picoproc.bench.compat.cli import add_compat_parser
        from picoproc.bench.perf.cli import add_perf_parser
        from picoproc.bench.security.cli import add_bench_parsers
        from picoproc.bench.soak import add_soak_parser
    except ImportError as exc:
        missing = sub.add_parser("bench", help="benchmarks (not installed in this copy)")
        reason = f"picoproc bench: the benchmark suites are not installed ({exc})"

        def _no_bench(_args) -> int:
            print(reason, file=sys.stderr)
            return EXIT_PICOPROC_ERROR

        missing.set_defaults(func=_no_bench)
    else:
        add_bench_parsers(sub, parser_class=_Parser,
                          extra=[add_perf_parser, add_soak_parser, add_compat_parser])
    return parser


def _json_target(argv: list[str]) -> str | None:
    """``--json FILE`` of a ``run`` whose options argparse refused, so that
    even that failure leaves its JSON result."""
    if "run" not in argv:
        return None
    args = argv[argv.index("run") + 1:]
    if "--" in args:
        args = args[:args.index("--")]
    for i, a in enumerate(args):
        if a == "--json" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--json="):
            return a.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = None
    try:
        args = parser.parse_args(argv)
        if args.version:
            print(_version())
            return 0
        if getattr(args, "command", None) and args.command[0] == "--":
            args.command = args.command[1:]
        if not getattr(args, "func", None):
            raise UsageError("picoproc: no command given (see picoproc --help)")
        return args.func(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        target = _json_target(argv)
        if target:
            command = argv[argv.index("--") + 1:] if "--" in argv else []
            _write_json(target, Result.failed_start(command, "pico", EXIT_PICOPROC_ERROR,
                                                    str(exc)).to_json())
        return EXIT_PICOPROC_ERROR
    except PicoprocError as exc:
        # Whatever failure of picoproc's a command did not word itself: one
        # line and the error's exit status (docs/RESULT.md), no traceback.
        return _fail(args, exc.exit_status, _error_line(exc))
    except ImportError as exc:
        # A missing or stale C module (picoproc.native.NativeModuleError) is an
        # installation problem: one line saying so, not a traceback.
        print(f"picoproc: {exc}", file=sys.stderr)
        return EXIT_PICOPROC_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `picoproc abi --linux | head`): not an
        # error worth a traceback; silence the final flush too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def console_main() -> int:
    """The ``picoproc`` command (and ``python -m picoproc``): main(), for a
    process that ends when it returns."""
    argv = sys.argv[1:]
    status = main(argv)
    # Everything still alive stays alive until the process ends, so the
    # interpreter's last garbage collections need not walk it: they are
    # most of a short run's exit.  (Not in main(), which a caller's
    # long-lived process may call.)
    import gc

    gc.freeze()
    if argv[:1] == ["run"]:
        _end_process(status)
    return status


def _end_process(status: int) -> None:
    """Ends the process after ``picoproc run`` as the interpreter would,
    without tearing it down: stdout and stderr flushed, the atexit handlers
    run, and the threads left (all daemon threads: the monitor's, the
    spawner's) end with it.  A run leaves nothing else to finish: what it
    writes (--json) is written and closed before main() returns."""
    import atexit

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    os._exit(status)
