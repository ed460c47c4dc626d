"""picoproc.records builds the methods dataclasses would, without importing
dataclasses: every behaviour picoproc's types rely on is compared here with
the same class built by dataclasses itself."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from picoproc import records

pytestmark = pytest.mark.unit


def _pair(frozen: bool):
    """The same class, as a record and as a dataclass."""
    def body():
        class Point:
            x: int
            y: int = 2
            tags: list = records.field(default_factory=list)
            note: str | None = records.field(default=None, repr=False, compare=False)
            cache: dict | None = records.field(default=None, init=False, repr=False, compare=False)

            def norm(self) -> int:
                return self.x + self.y
        return Point

    rec = records.record(frozen=frozen)(body())

    @dataclasses.dataclass(frozen=frozen)
    class Point:
        x: int
        y: int = 2
        tags: list = dataclasses.field(default_factory=list)
        note: str | None = dataclasses.field(default=None, repr=False, compare=False)
        cache: dict | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    return rec, Point


@pytest.mark.parametrize("frozen", [False, True])
def test_a_record_behaves_as_the_same_dataclass(frozen):
    rec, dc = _pair(frozen)
    for cls in (rec, dc):
        a, b = cls(1), cls(1, 2, [], note="other")
        assert a == b and a is not b  # note is not compared
        assert a != cls(1, 3) and (a == (1, 2)) is False
        assert repr(a) == "_pair.<locals>.body.<locals>.Point(x=1, y=2, tags=[])" if cls is rec else True
        assert a.tags is not cls(1).tags  # one list per instance
        assert a.cache is None
        assert cls.__match_args__ == ("x", "y", "tags", "note")
        with pytest.raises(TypeError):
            cls()  # x is required
        with pytest.raises(TypeError):
            cls(1, cache={})  # not an __init__ parameter
    assert repr(rec(1, 5, [3])).split("(", 1)[1] == repr(dc(1, 5, [3])).split("(", 1)[1]
    if frozen:
        assert hash(rec(1, tags=(1,))) == hash(rec(1, tags=(1,)))
        for cls in (rec, dc):
            with pytest.raises(AttributeError):
                cls(1).x = 2
            with pytest.raises(AttributeError):
                del cls(1).y
    else:
        for cls in (rec, dc):
            with pytest.raises(TypeError):
                hash(cls(1))  # mutable and compared by value
            p = cls(1)
            p.x = 7
            assert p.x == 7


@pytest.mark.parametrize("frozen", [False, True])
def test_the_standard_library_sees_a_record_as_a_dataclass(frozen):
    rec, dc = _pair(frozen)
    r = rec(1, 5, [3], note="n")
    assert dataclasses.is_dataclass(r) and dataclasses.is_dataclass(rec)
    assert [f.name for f in dataclasses.fields(r)] == [f.name for f in dataclasses.fields(dc)]
    assert records.field_names(rec) == ("x", "y", "tags", "note", "cache")
    moved = dataclasses.replace(r, y=9)
    assert type(moved) is rec and (moved.x, moved.y, moved.tags, moved.note) == (1, 9, [3], "n")
    with pytest.raises(ValueError):
        dataclasses.replace(r, cache={})  # init=False, as for a dataclass
    assert dataclasses.asdict(r) == records.asdict(r) == dataclasses.asdict(dc(1, 5, [3], note="n"))
    assert copy.deepcopy(r) == r and copy.deepcopy(r) is not r


def test_picoprocs_types_pickle_and_compare_as_before():
    from picoproc.manifest import Limits, default_manifest

    m = default_manifest()
    assert pickle.loads(pickle.dumps(m)) == m
    assert hash(pickle.loads(pickle.dumps(m))) == hash(m)
    assert dataclasses.replace(m, limits=dataclasses.replace(m.limits, pids=8)).limits.pids == 8
    assert records.field_names(Limits) == tuple(f.name for f in dataclasses.fields(Limits))


def test_records_within_records_are_converted_by_asdict():
    @records.record(frozen=True)
    class Inner:
        a: int

    @records.record
    class Outer:
        inner: Inner
        many: tuple = ()
        by_name: dict = records.field(default_factory=dict)

    o = Outer(Inner(1), (Inner(2),), {"k": Inner(3)})
    assert records.asdict(o) == {"inner": {"a": 1}, "many": ({"a": 2},), "by_name": {"k": {"a": 3}}}
    assert records.asdict(o) == dataclasses.asdict(o)


def test_what_a_record_does_not_support_is_refused():
    with pytest.raises(ValueError):
        @records.record
        class Bad:
            items: list = []  # noqa: RUF012 - the point of the test

    with pytest.raises(TypeError):
        @records.record
        class Order:
            a: int = 1
            b: int

    @records.record
    class Base:
        a: int

    with pytest.raises(TypeError):
        @records.record
        class Child(Base):
            b: int

    with pytest.raises(TypeError):
        @records.record
        class Post:
            a: int

            def __post_init__(self):
                pass


def test_kept_init_code_is_used_only_when_it_is_a_table_of_code(monkeypatch):
    import marshal

    good = {"def __init__(self):\n    pass\n": compile("def __init__(self):\n    pass\n", "<x>", "exec")}
    assert records._decode_kept(marshal.dumps(good)).keys() == good.keys()
    for bad in (marshal.dumps(["not", "a", "dict"]), marshal.dumps({"src": "not code"}), b"\x00garbage",
                marshal.dumps({1: good[next(iter(good))]})):
        with pytest.raises((ValueError, EOFError)):
            records._decode_kept(bad)
    # A kept entry stands for exactly its source: another source is compiled anew.
    monkeypatch.setattr(records, "_kept", {"def __init__(self, a):\n    pass\n": compile("x = 1", "<x>", "exec")})
    monkeypatch.setattr(records, "_kept_key", "0" * 32)
    monkeypatch.setattr(records.sys, "dont_write_bytecode", True)

    @records.record
    class One:
        a: int

    assert One(5).a == 5
