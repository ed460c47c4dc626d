"""A direct call's argument rules in words, for people (``picoproc abi``).

The table states rules as BPF-shaped comparisons on the raw registers
(``a0 & 0xFFFFFFFFFFFFF800 == 0x800`` ...), because that is what the filter
must check.  A reader wants the set of values that passes: rules that test
one argument are merged into ranges of allowed values and described by what
they allow (or, when shorter, by what they leave out):

    close:        fd is below 2^31, but not 1018 (PICO_RESERVED_FD_BASE)..1023
    rt_sigaction: signum is at most 64 (NSIG), but not 31 (SIGSYS)
    fcntl:        cmd is one of F_DUPFD, F_DUPFD_CLOEXEC, ...
"""

from __future__ import annotations

import itertools

from .table import ABITable, Comparison, DirectCall

MASK64 = (1 << 64) - 1

# The Linux parameter names of the arguments the table constrains (man 2).
PARAMETER_NAMES: dict[str, tuple[str, ...]] = {
    "close": ("fd",),
    "dup3": ("oldfd", "newfd", "flags"),
    "fcntl": ("fd", "cmd", "arg"),
    "ioctl": ("fd", "request", "arg"),
    "pipe2": ("pipefd", "flags"),
    "socketpair": ("domain", "type", "protocol", "sv"),
    "sendmsg": ("sockfd", "msg", "flags"),
    "sendto": ("sockfd", "buf", "len", "flags", "dest_addr", "addrlen"),
    "setsockopt": ("sockfd", "level", "optname", "optval", "optlen"),
    "getsockopt": ("sockfd", "level", "optname", "optval", "optlen"),
    "ppoll": ("fds", "nfds", "tmo_p", "sigmask", "sigsetsize"),
    "epoll_pwait": ("epfd", "events", "maxevents", "timeout", "sigmask", "sigsetsize"),
    "clone": ("flags", "stack", "parent_tid", "child_tid", "tls"),
    "execveat": ("dirfd", "pathname", "argv", "envp", "flags"),
    "arch_prctl": ("code", "addr"),
    "rt_sigaction": ("signum", "act", "oldact", "sigsetsize"),
}

# Bits a named mask stands for, so "flags has none of CLONE_FORBIDDEN" can
# say which flags those are (<linux/sched.h>).
_CLONE_BITS = {
    0x00002000: "CLONE_PTRACE", 0x00008000: "CLONE_PARENT", 0x00020000: "CLONE_NEWNS",
    0x02000000: "CLONE_NEWCGROUP", 0x04000000: "CLONE_NEWUTS", 0x08000000: "CLONE_NEWIPC",
    0x10000000: "CLONE_NEWUSER", 0x20000000: "CLONE_NEWPID", 0x40000000: "CLONE_NEWNET",
}


def _arg_name(call: str, arg: int) -> str:
    names = PARAMETER_NAMES.get(call, ())
    return names[arg] if arg < len(names) else f"argument {arg + 1}"


def _number(value: int) -> str:
    if value >= 1 << 16 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return str(value) if value < 1 << 16 else hex(value)


class _Names:
    """Constant names for values, taken from the rule texts of one call (so
    31 is shown as SIGSYS only where the rule said SIGSYS)."""

    def __init__(self, table: ABITable, call: DirectCall) -> None:
        words = {w for r in call.rules for c in r.comparisons for w in c.text.replace("&", " ").split()}
        self.by_value: dict[int, str] = {}
        for name, value in table.constants.items():
            if name in words:
                self.by_value.setdefault(value, name)
        if "loader_fd" in words:
            self.by_value.setdefault(table.loader_fd, "loader_fd")

    def show(self, value: int, *, bare: bool = False) -> str:
        name = self.by_value.get(value)
        if name is None:
            return _number(value)
        return name if bare else f"{_number(value)} ({name})"


def _interval(c: Comparison) -> list[tuple[int, int]] | None:
    """The allowed values of one comparison as inclusive ranges, or None when
    it is not a range (a bit test)."""
    v = c.value
    if c.mask is not None:
        low_bits = ~c.mask & MASK64
        contiguous_high = low_bits & (low_bits + 1) == 0
        if contiguous_high and v & low_bits == 0:
            return [(v, v + low_bits)]
        return None
    return {
        "==": [(v, v)],
        "<": [(0, v - 1)] if v > 0 else [],
        "<=": [(0, v)],
        ">": [(v + 1, MASK64)] if v < MASK64 else [],
        ">=": [(v, MASK64)],
        "!=": [r for r in ((0, v - 1), (v + 1, MASK64)) if r[0] <= r[1]],
    }[c.op]


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _ranges_in_words(arg: str, ranges: list[tuple[int, int]], names: _Names) -> str:
    small = sum(hi - lo + 1 for lo, hi in ranges) <= 32
    if all(lo == hi for lo, hi in ranges) or (
            small and all(v in names.by_value for lo, hi in ranges for v in range(lo, hi + 1))):
        values = [names.show(v, bare=True) for lo, hi in ranges for v in range(lo, hi + 1)]
        return f"{arg} is {values[0]}" if len(values) == 1 else f"{arg} is one of {', '.join(values)}"
    lo, hi = ranges[0][0], ranges[-1][1]
    holes = [(a_hi + 1, b_lo - 1) for (_, a_hi), (b_lo, _) in itertools.pairwise(ranges)]
    if len(holes) <= 3 and all(b - a < 16 for a, b in holes):
        if lo == 0 and hi == MASK64:
            bound = "any value"
        elif lo == 0 and names.by_value.get(hi + 1) is None and hi + 1 & hi == 0:
            bound = f"below {_number(hi + 1)}"
        elif lo == 0:
            bound = f"at most {names.show(hi)}"
        else:
            bound = f"from {names.show(lo)} to {names.show(hi)}"
        text = f"{arg} is {bound}"
        if holes:
            text += ", but not " + " or ".join(names.show(a) if a == b else f"{names.show(a)}..{names.show(b)}"
                                               for a, b in holes)
        return text
    return f"{arg} is in " + ", ".join(
        names.show(a) if a == b else f"{names.show(a)}..{names.show(b)}" for a, b in ranges)


def _comparison_in_words(call: str, c: Comparison, names: _Names) -> str:
    arg = _arg_name(call, c.arg)
    if c.mask is not None and c.value == 0:
        mask_name = names.by_value.get(c.mask)
        bits = [n for b, n in _CLONE_BITS.items() if c.mask & b] if mask_name and \
            mask_name.startswith("CLONE_") else []
        shown = f"{mask_name} ({', '.join(bits)})" if bits else (mask_name or hex(c.mask))
        if c.mask & (c.mask - 1) == 0:
            return f"{arg} does not have {shown} set"
        return f"{arg} has none of {shown}"
    ranges = _interval(c)
    if ranges is not None:
        return _ranges_in_words(arg, _merge(ranges), names)
    return f"{arg} & {hex(c.mask)} is {names.show(c.value)}"


def _pairs_in_words(call: DirectCall, brief: bool) -> str | None:
    """Rules that each name one value of the same two arguments ("a1 == X
    && a2 == Y", setsockopt's (level, optname) pairs), grouped by the first:
    "level is SOL_SOCKET and optname is one of ...".  The names are the
    rules' own (a value can have several: 6 is SO_BROADCAST as an optname,
    IPPROTO_TCP as a level).  None when the rules have another shape."""
    groups: dict[str, list[str]] = {}
    args = None
    for rule in call.rules:
        cs = rule.comparisons
        if len(cs) != 2 or any(c.op != "==" or c.mask is not None for c in cs):
            return None
        if args is None:
            args = (cs[0].arg, cs[1].arg)
        if (cs[0].arg, cs[1].arg) != args:
            return None
        first, second = (c.text.split("==")[1].strip() for c in cs)
        groups.setdefault(first, []).append(second)
    if args is None or len(call.rules) < 4:
        return None
    a, b = (_arg_name(call.name, i) for i in args)
    out = []
    for first, seconds in groups.items():
        listed = f"one of {len(seconds)} names" if brief else "one of " + ", ".join(seconds)
        out.append(f"{a} is {first} and {b} is {listed if len(seconds) > 1 else seconds[0]}")
    return "; or ".join(out)


def rules_in_words(call: DirectCall, table: ABITable, *, brief: bool = False) -> str:
    """The call's rules as one sentence; "any arguments" when unconstrained.
    ``brief``: long lists of names are counted, not listed (an overview)."""
    if not call.rules:
        return "any arguments"
    pairs = _pairs_in_words(call, brief)
    if pairs is not None:
        return pairs
    names = _Names(table, call)
    single = [r.comparisons[0] for r in call.rules if len(r.comparisons) == 1]
    if len(single) == len(call.rules) and len({c.arg for c in single}) == 1:
        pieces = [_interval(c) for c in single]
        if all(p is not None for p in pieces):
            ranges = _merge([r for p in pieces for r in p])
            return _ranges_in_words(_arg_name(call.name, single[0].arg), ranges, names)
    rules = [" and ".join(_comparison_in_words(call.name, c, names) for c in r.comparisons)
             for r in call.rules]
    return "; or ".join(rules)
