"""Loads and validates libos/linux_calls.toml: the one table of the Linux calls
the library OS handles or refuses.

Everything that knows how the library OS answers a Linux call -- the C
dispatch table and flags it is built with (libos/generate.py), ``picoproc abi
--linux`` and docs/LINUX.md -- reads the table through this module, so there
is exactly one interpretation of it.  The checks here are the rules that keep
the table sound against the ABI (abi/abi_v1.toml): a mediated call named must
exist, a rewritable call must never be direct, a call the filter answers
itself can have no row.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from importlib import resources

from picoproc.errors import PicoprocError

TABLE_FILE = "linux_calls.toml"
SUPPORT_LEVELS = ("full", "partial", "refused")
_ROW_KEYS = {"support", "note", "errno", "mediated", "rewritable", "audit"}


class LinuxCallsError(ValueError, PicoprocError):
    """The table itself is malformed (a bug in linux_calls.toml, not a user error)."""


@dataclasses.dataclass(frozen=True)
class LinuxCall:
    name: str
    nr: int
    family: str
    support: str  # one of SUPPORT_LEVELS
    note: str
    errno_name: str | None  # refused only
    errno: int | None
    mediated: tuple[str, ...]
    rewritable: bool
    audit: bool  # False: an ENOSYS answer leaves no audit record

    @property
    def refused(self) -> bool:
        return self.support == "refused"

    @property
    def handler(self) -> str:
        """The C function that serves the call (generated for refused rows)."""
        return f"libos_refuse_{self.name}" if self.refused else f"libos_sys_{self.name}"


def parse_calls(text: str, abi=None) -> tuple[LinuxCall, ...]:
    """Parses and validates the table's TOML text against ``abi`` (default: the
    shipped ABI table); rows in the file's order.  Exposed for tests."""
    from picoproc.abi.linux import ERRNO, SECCOMP_PASSTHROUGH, SYSCALLS_BY_NAME
    from picoproc.abi.table import LOADER_ONLY_CALLS, load_table

    abi = abi or load_table()
    direct = abi.direct_by_name()
    # Calls the "libos" filter answers itself never reach the library OS.
    filter_answers = {e.name for e in abi.errno_calls if not e.libos_traps}
    mediated_names = set(abi.mediated_by_name())
    raw = tomllib.loads(text)
    rows: list[LinuxCall] = []
    seen: set[str] = set()
    for family, entries in raw.items():
        if not isinstance(entries, dict):
            raise LinuxCallsError(f"{family}: expected a section of rows (name = {{ ... }})")
        for name, row in entries.items():
            where = f"{family}.{name}"
            if not isinstance(row, dict):
                raise LinuxCallsError(f"{where}: expected an inline table")
            if name in seen:
                raise LinuxCallsError(f"{where}: listed twice")
            seen.add(name)
            nr = SYSCALLS_BY_NAME.get(name)
            if nr is None:
                raise LinuxCallsError(f"{where}: not an x86-64 Linux syscall")
            extra = set(row) - _ROW_KEYS
            if extra:
                raise LinuxCallsError(f"{where}: unknown keys {sorted(extra)}")
            support = row.get("support")
            if support not in SUPPORT_LEVELS:
                raise LinuxCallsError(f"{where}: support must be one of {SUPPORT_LEVELS}, not {support!r}")
            note = row.get("note", "")
            if not isinstance(note, str):
                raise LinuxCallsError(f"{where}.note: expected a string")
            if support != "full" and not note.strip():
                raise LinuxCallsError(f"{where}: a {support} call needs a note saying "
                                      + ("what is missing" if support == "partial" else "why"))
            errno_name = row.get("errno")
            if support == "refused":
                if errno_name not in ERRNO:
                    raise LinuxCallsError(f"{where}: a refused call needs a known errno, not {errno_name!r}")
            elif errno_name is not None:
                raise LinuxCallsError(f"{where}: only a refused call has an errno")
            mediated = row.get("mediated", [])
            if not (isinstance(mediated, list) and all(isinstance(m, str) for m in mediated)):
                raise LinuxCallsError(f"{where}.mediated: expected a list of mediated call names")
            unknown = set(mediated) - mediated_names
            if unknown:
                raise LinuxCallsError(f"{where}: backed by unknown mediated calls {sorted(unknown)}")
            if support == "refused" and mediated:
                raise LinuxCallsError(f"{where}: a refused call is backed by no mediated call")
            rewritable = row.get("rewritable", False)
            audit = row.get("audit", True)
            if not isinstance(rewritable, bool) or not isinstance(audit, bool):
                raise LinuxCallsError(f"{where}: rewritable and audit are true or false")
            if name in filter_answers:
                raise LinuxCallsError(f"{where}: the filter answers it (abi_v1.toml [[errno]]); "
                                      "the library OS never sees it")
            if name in SECCOMP_PASSTHROUGH:
                raise LinuxCallsError(f"{where}: the kernel exempts it from seccomp")
            if name in direct:
                if rewritable and name not in LOADER_ONLY_CALLS:
                    # Rewriting a direct call's sites would send every such
                    # call through the library OS instead of the kernel (the
                    # loader-only ones trap from the program anyway).
                    raise LinuxCallsError(f"{where}: a direct call's sites must not be rewritten")
                if not note.strip():
                    raise LinuxCallsError(f"{where}: direct in the ABI; the note must say which forms trap")
            rows.append(LinuxCall(name, nr, family, support, note, errno_name,
                                  ERRNO[errno_name] if errno_name else None, tuple(mediated), rewritable, audit))
    return tuple(rows)


@functools.cache
def load_calls() -> tuple[LinuxCall, ...]:
    """The shipped table, rows in the file's order."""
    return parse_calls(resources.files(__package__).joinpath(TABLE_FILE).read_text())


def calls_by_name() -> dict[str, LinuxCall]:
    return {c.name: c for c in load_calls()}


UNIMPLEMENTED_NOTE = "not implemented: the library OS answers ENOSYS and leaves an audit record naming it"
PASSTHROUGH_NOTE = ("the kernel exempts it from seccomp; it only works from a uprobe trampoline, "
                    "which a picoprocess cannot install")


def linux_table() -> list[dict]:
    """How picoproc answers every x86-64 Linux syscall (``picoproc abi --linux``,
    docs/LINUX.md): the ABI table and this table, merged.

    One dict per syscall, by number: ``name``, ``nr``, ``handling`` (one of
    "direct", "emulated", "mediated", "refused"), ``support`` ("full",
    "partial", "refused" on purpose, or "unimplemented"), ``rules`` (direct:
    the argument rules, [] when unconditional), ``mediated`` (the mediated
    calls that back it), ``errno`` (refused: the errno the program sees),
    ``by`` (who answers: "filter", "library OS", "kernel"), ``note`` (what is
    missing, why it is refused, or how it is built), ``rewritable`` and
    ``family`` (the table's section; "" for calls in no row)."""
    from picoproc.abi.linux import SECCOMP_PASSTHROUGH, SYSCALLS_BY_NAME
    from picoproc.abi.table import load_table

    abi = load_table()
    direct = abi.direct_by_name()
    filter_answers = {e.name: e for e in abi.errno_calls if not e.libos_traps}
    calls = calls_by_name()
    rows = []
    for name, nr in sorted(SYSCALLS_BY_NAME.items(), key=lambda kv: kv[1]):
        call = calls.get(name)
        row = {"name": name, "nr": nr, "handling": "", "support": "", "rules": [], "mediated": [],
               "errno": None, "by": "", "note": "", "rewritable": False, "family": call.family if call else ""}
        if name in direct:
            d = direct[name]
            row.update(handling="direct", support="full", by="filter", rules=[r.text for r in d.rules], note=d.why)
            if call:
                row.update(support=call.support, note=call.note, mediated=list(call.mediated))
        elif name in filter_answers:
            e = filter_answers[name]
            row.update(handling="refused", support="refused", errno=e.errno_name, by="filter", note=e.why)
        elif name in SECCOMP_PASSTHROUGH:
            row.update(handling="refused", support="refused", by="kernel", note=PASSTHROUGH_NOTE)
        elif call and call.refused:
            row.update(handling="refused", support="refused", errno=call.errno_name, by="library OS",
                       note=call.note, rewritable=call.rewritable)
        elif call:
            row.update(handling="mediated" if call.mediated else "emulated", support=call.support,
                       by="library OS", note=call.note, mediated=list(call.mediated), rewritable=call.rewritable)
        else:
            row.update(handling="refused", support="unimplemented", errno="ENOSYS", by="library OS",
                       note=UNIMPLEMENTED_NOTE)
        rows.append(row)
    return rows
