"""Loads and validates the ABI table (abi/abi_v1.toml) into plain objects.

Everything that knows what a picoprocess may call — the BPF generator, the C
header and docs generators, ``picoproc abi`` — reads the table through this
module, so there is exactly one interpretation of it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
from importlib import resources

from picoproc.errors import PicoprocError
from . import linux

TABLE_FILE = "abi_v1.toml"
DIRECT_LIMIT = 60
MEDIATED_LIMIT = 20
# Direct calls that the "libos" filter allows only from the loader's own text
# and traps from anywhere else, whatever their arguments (abi/bpf.py,
# loader_sigaction_prefix): the program's every call of them reaches the
# library OS.
LOADER_ONLY_CALLS = ("rt_sigaction", "rt_sigprocmask", "getsockname")

OPS = ("==", "!=", "<", "<=", ">", ">=")
_CMP = re.compile(
    r"^a(?P<arg>[0-5])\s*(?:&\s*(?P<mask>\w+)\s*)?(?P<op>==|!=|<=|>=|<|>)\s*(?P<value>\w+)$"
)


class ABITableError(ValueError, PicoprocError):
    """The table itself is malformed (a bug in abi_v1.toml, not a user error)."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One argument comparison: ``a<arg> [& mask] <op> value``."""

    arg: int
    op: str
    value: int
    mask: int | None = None
    text: str = ""

    def matches(self, args: tuple[int, ...]) -> bool:
        """Evaluates the comparison as the kernel's BPF would (64-bit unsigned)."""
        a = args[self.arg] & 0xFFFFFFFFFFFFFFFF
        if self.mask is not None:
            return (a & self.mask) == self.value
        return {
            "==": a == self.value,
            "!=": a != self.value,
            "<": a < self.value,
            "<=": a <= self.value,
            ">": a > self.value,
            ">=": a >= self.value,
        }[self.op]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A conjunction of comparisons; the call is allowed when every one holds."""

    comparisons: tuple[Comparison, ...]
    text: str

    def matches(self, args: tuple[int, ...]) -> bool:
        return all(c.matches(args) for c in self.comparisons)


@dataclasses.dataclass(frozen=True)
class DirectCall:
    name: str
    nr: int
    group: str
    why: str
    rules: tuple[Rule, ...]  # empty: allowed whatever the arguments

    @property
    def constrained(self) -> bool:
        return bool(self.rules)

    def allows(self, args: tuple[int, ...]) -> bool:
        return not self.rules or any(r.matches(args) for r in self.rules)


@dataclasses.dataclass(frozen=True)
class ErrnoCall:
    name: str
    nr: int
    errno_name: str
    errno: int
    why: str
    libos_traps: bool = False  # "libos" mode: trapped to the library OS instead


@dataclasses.dataclass(frozen=True)
class Argument:
    name: str
    ctype: str
    doc: str


@dataclasses.dataclass(frozen=True)
class MediatedCall:
    name: str
    index: int  # offset from mediated_base
    nr: int  # the syscall number the guest uses
    purpose: str
    args: tuple[Argument, ...]
    result: str
    errors: tuple[str, ...]
    fd_result: bool = False  # answers with a new fd (through NOTIF_ADDFD or a channel)


@dataclasses.dataclass(frozen=True)
class ABITable:
    version: int
    mediated_base: int
    loader_fd: int
    loader_text_start: int
    loader_text_size: int
    max_path: int
    max_uri: int
    constants: dict[str, int]
    direct: tuple[DirectCall, ...]
    errno_calls: tuple[ErrnoCall, ...]
    mediated: tuple[MediatedCall, ...]

    def direct_by_name(self) -> dict[str, DirectCall]:
        return {d.name: d for d in self.direct}

    def mediated_by_name(self) -> dict[str, MediatedCall]:
        return {m.name: m for m in self.mediated}

    def mediated_by_nr(self) -> dict[int, MediatedCall]:
        return {m.nr: m for m in self.mediated}


def _resolve(token: str, names: dict[str, int], where: str) -> int:
    if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", token):
        return int(token, 0)
    if token in names:
        return names[token]
    raise ABITableError(f"{where}: unknown constant {token!r}")


def _parse_rule(text: str, names: dict[str, int], where: str) -> Rule:
    comparisons = []
    seen_args = set()
    for part in text.split("&&"):
        part = part.strip()
        m = _CMP.match(part)
        if not m:
            raise ABITableError(f"{where}: cannot parse comparison {part!r}")
        arg = int(m["arg"])
        if arg in seen_args:
            # libseccomp refuses two comparisons on one argument in one rule.
            raise ABITableError(f"{where}: argument a{arg} compared twice in {text!r}")
        seen_args.add(arg)
        mask = _resolve(m["mask"], names, where) if m["mask"] else None
        if mask is not None and m["op"] != "==":
            raise ABITableError(f"{where}: a masked comparison must use ==")
        comparisons.append(
            Comparison(arg, m["op"], _resolve(m["value"], names, where), mask, part)
        )
    return Rule(tuple(comparisons), text)


def _require(entry: dict, key: str, kind: type, where: str):
    if key not in entry:
        raise ABITableError(f"{where}: missing key {key!r}")
    if not isinstance(entry[key], kind):
        raise ABITableError(f"{where}.{key}: expected {kind.__name__}")
    return entry[key]


def parse_table(text: str) -> ABITable:
    """Parses and validates the table's TOML text (exposed for tests)."""
    raw = tomllib.loads(text)
    known_top = {
        "version", "mediated_base", "loader_fd", "max_path", "max_uri",
        "loader_text_start", "loader_text_size",
        "constants", "direct", "errno", "mediated",
    }
    unknown = set(raw) - known_top
    if unknown:
        raise ABITableError(f"unknown top-level keys: {sorted(unknown)}")
    names: dict[str, int] = {}
    for key in ("mediated_base", "loader_fd", "max_path", "max_uri", "loader_text_start", "loader_text_size"):
        names[key] = _require(raw, key, int, "table")
    for key, value in raw.get("constants", {}).items():
        if not isinstance(value, int):
            raise ABITableError(f"constants.{key}: expected an integer")
        names[key] = value

    direct = []
    seen = set()
    for i, entry in enumerate(raw.get("direct", [])):
        where = f"direct[{i}]"
        name = _require(entry, "name", str, where)
        where = f"direct.{name}"
        if name in seen:
            raise ABITableError(f"{where}: listed twice")
        seen.add(name)
        nr = linux.SYSCALLS_BY_NAME.get(name)
        if nr is None:
            raise ABITableError(f"{where}: not an x86-64 Linux syscall")
        extra = set(entry) - {"name", "group", "why", "rules"}
        if extra:
            raise ABITableError(f"{where}: unknown keys {sorted(extra)}")
        why = _require(entry, "why", str, where)
        if not why.strip():
            raise ABITableError(f"{where}: every direct call needs a reason")
        rules = tuple(_parse_rule(r, names, where) for r in entry.get("rules", []))
        direct.append(DirectCall(name, nr, _require(entry, "group", str, where), why, rules))
    if len(direct) > DIRECT_LIMIT:
        raise ABITableError(f"{len(direct)} direct calls; the limit is {DIRECT_LIMIT}")

    errno_calls = []
    for i, entry in enumerate(raw.get("errno", [])):
        name = _require(entry, "name", str, f"errno[{i}]")
        where = f"errno.{name}"
        if name in seen:
            raise ABITableError(f"{where}: already listed")
        seen.add(name)
        nr = linux.SYSCALLS_BY_NAME.get(name)
        if nr is None:
            raise ABITableError(f"{where}: not an x86-64 Linux syscall")
        extra = set(entry) - {"name", "errno", "why", "libos"}
        if extra:
            raise ABITableError(f"{where}: unknown keys {sorted(extra)}")
        errno_name = _require(entry, "errno", str, where)
        if errno_name not in linux.ERRNO:
            raise ABITableError(f"{where}: unknown errno {errno_name!r}")
        libos = entry.get("libos", "errno")
        if libos not in ("errno", "trap"):
            raise ABITableError(f"{where}.libos: \"errno\" (default) or \"trap\", not {libos!r}")
        errno_calls.append(
            ErrnoCall(name, nr, errno_name, linux.ERRNO[errno_name], _require(entry, "why", str, where),
                      libos == "trap")
        )

    mediated = []
    indices = set()
    for i, entry in enumerate(raw.get("mediated", [])):
        name = _require(entry, "name", str, f"mediated[{i}]")
        where = f"mediated.{name}"
        index = _require(entry, "nr", int, where)
        if index in indices or not 0 <= index < MEDIATED_LIMIT:
            raise ABITableError(f"{where}: nr {index} duplicated or outside 0..{MEDIATED_LIMIT - 1}")
        indices.add(index)
        args = []
        for a in _require(entry, "args", list, where):
            if not (isinstance(a, list) and len(a) == 3 and all(isinstance(x, str) for x in a)):
                raise ABITableError(f"{where}.args: each argument is [name, C type, doc]")
            args.append(Argument(*a))
        if len(args) > 6:
            raise ABITableError(f"{where}: more than six arguments")
        extra = set(entry) - {"name", "nr", "purpose", "args", "result", "errors", "fd_result"}
        if extra:
            raise ABITableError(f"{where}: unknown keys {sorted(extra)}")
        fd_result = entry.get("fd_result", False)
        if not isinstance(fd_result, bool):
            raise ABITableError(f"{where}.fd_result: expected true or false")
        mediated.append(
            MediatedCall(
                name, index, names["mediated_base"] + index,
                _require(entry, "purpose", str, where), tuple(args),
                _require(entry, "result", str, where),
                tuple(_require(entry, "errors", list, where)),
                fd_result,
            )
        )
    start, size = names["loader_text_start"], names["loader_text_size"]
    if size <= 0 or (start >> 32) != ((start + size) >> 32):
        # The BPF compares the high half once and the low halves as unsigned
        # 32-bit numbers, so the end must not reach the next 4 GiB block.
        raise ABITableError("loader text range must be non-empty and end inside its 4 GiB-aligned block")
    if len(mediated) > MEDIATED_LIMIT:
        raise ABITableError(f"{len(mediated)} mediated calls; the limit is {MEDIATED_LIMIT}")
    if names["mediated_base"] <= max(linux.SYSCALLS_BY_NAME.values()):
        raise ABITableError("mediated_base overlaps the Linux syscall range")
    if names["mediated_base"] + MEDIATED_LIMIT >= linux.X32_SYSCALL_BIT:
        raise ABITableError("mediated range overlaps the x32 syscall range")

    return ABITable(
        version=_require(raw, "version", int, "table"),
        mediated_base=names["mediated_base"],
        loader_fd=names["loader_fd"],
        loader_text_start=names["loader_text_start"],
        loader_text_size=names["loader_text_size"],
        max_path=names["max_path"],
        max_uri=names["max_uri"],
        constants={k: v for k, v in raw.get("constants", {}).items()},
        direct=tuple(direct),
        errno_calls=tuple(errno_calls),
        mediated=tuple(sorted(mediated, key=lambda m: m.index)),
    )


@functools.cache
def load_table() -> ABITable:
    """The ABI table shipped with this build of picoproc."""
    text = resources.files(__package__).joinpath(TABLE_FILE).read_text()
    return parse_table(text)
