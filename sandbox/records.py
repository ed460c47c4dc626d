"""Data classes that a short run can afford: ``record`` builds the methods
``dataclasses.dataclass`` would (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, the frozen ``__setattr__``/``__delattr__``,
``__match_args__``) without importing ``dataclasses``, which imports
``inspect`` and through it ``ast``, ``dis`` and ``tokenize`` — a large share
of a ``picoproc run`` that itself lasts a few milliseconds.

A record is still a dataclass to the standard library: its
``__dataclass_fields__`` is built by ``dataclasses`` itself the first time
something asks for it, so ``dataclasses.replace``, ``fields``, ``asdict`` and
``is_dataclass`` work on records as on any dataclass (and only then import
``dataclasses``).  ``asdict`` and ``field_names`` here serve the run path
without that import.

What is supported is what picoproc's own types use: fields declared by
annotation (under ``from __future__ import annotations``), defaults,
``field(default=..., default_factory=..., init=..., repr=..., compare=...)``
and ``frozen``; no inheritance between records, ``ClassVar``, ``InitVar``,
``__post_init__``, ordering or slots (``record`` refuses what it does not
support, rather than silently doing something else).
"""

from __future__ import annotations

import marshal
import sys
from operator import attrgetter

from picoproc.errors import PicoprocError

__all__ = ["FrozenInstanceError", "asdict", "field", "field_names", "is_record", "record"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class FrozenInstanceError(AttributeError, PicoprocError):
    """Assigning to a field of a frozen record (an AttributeError, as
    dataclasses' own)."""


class Field:
    __slots__ = ("name", "default", "default_factory", "init", "repr", "compare")

    def __init__(self, default=MISSING, default_factory=MISSING, init=True, repr=True, compare=True):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.compare = compare


def field(*, default=MISSING, default_factory=MISSING, init: bool = True, repr: bool = True,
          compare: bool = True):
    """As ``dataclasses.field`` (the arguments picoproc uses)."""
    return Field(default, default_factory, init, repr, compare)


def record(cls=None, /, *, frozen: bool = False):
    """As ``dataclasses.dataclass(frozen=frozen)``, for the classes this
    module's docstring describes."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def field_names(class_or_instance) -> tuple[str, ...]:
    """The names of a record's fields, in order (``dataclasses.fields``' names)."""
    cls = class_or_instance if isinstance(class_or_instance, type) else type(class_or_instance)
    return tuple(f.name for f in cls.__record_fields__)


def is_record(obj) -> bool:
    """Whether ``obj`` is a record instance (not a record class)."""
    return hasattr(type(obj), "__record_fields__") and not isinstance(obj, type)


def asdict(obj) -> dict:
    """As ``dataclasses.asdict``: fields to a dict, records within records,
    lists, tuples and dicts copied recursively."""
    return _asdict(obj)


_ATOMS = (type(None), bool, int, float, complex, str, bytes, range)  # deepcopy returns these as they are


def _asdict(value):
    if type(value) in _ATOMS:
        return value
    fields = getattr(type(value), "__record_fields__", None)
    if fields is not None and not isinstance(value, type):
        return {f.name: _asdict(getattr(value, f.name)) for f in fields}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[_asdict(v) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(_asdict(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_asdict(k), _asdict(v)) for k, v in value.items())
    if fields is None and hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type):
        import dataclasses

        return dataclasses.asdict(value)
    import copy

    return copy.deepcopy(value)


class _DataclassFields:
    """``__dataclass_fields__`` of a record, built by ``dataclasses`` from an
    equivalent class on first use and then kept on the record's class."""

    def __get__(self, instance, owner):
        import dataclasses

        namespace = {"__annotations__": {f.name: owner.__annotations__[f.name]
                                         for f in owner.__record_fields__},
                     "__module__": owner.__module__, "__qualname__": owner.__qualname__}
        for f in owner.__record_fields__:
            if f.default is not MISSING or f.default_factory is not MISSING or not (f.init and f.repr
                                                                                    and f.compare):
                namespace[f.name] = dataclasses.field(
                    default=dataclasses.MISSING if f.default is MISSING else f.default,
                    default_factory=dataclasses.MISSING if f.default_factory is MISSING else f.default_factory,
                    init=f.init, repr=f.repr, compare=f.compare)
        twin = dataclasses.dataclass(frozen=owner.__record_frozen__)(type(owner.__name__, (), namespace))
        type.__setattr__(owner, "__dataclass_fields__", twin.__dataclass_fields__)
        type.__setattr__(owner, "__dataclass_params__", twin.__dataclass_params__)
        return twin.__dataclass_fields__


def _build(cls, frozen: bool):
    own = cls.__dict__
    for base in cls.__mro__[1:-1]:
        if "__record_fields__" in base.__dict__ or "__dataclass_fields__" in base.__dict__:
            raise TypeError(f"record {cls.__qualname__}: inheriting from a data class is not supported")
    if "__post_init__" in own:
        raise TypeError(f"record {cls.__qualname__}: __post_init__ is not supported")
    fields = []
    for name, annotation in own.get("__annotations__", {}).items():
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        if text.startswith(("ClassVar", "typing.ClassVar", "InitVar", "dataclasses.InitVar")):
            raise TypeError(f"record {cls.__qualname__}.{name}: ClassVar and InitVar are not supported")
        value = own.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: "
                             "use default_factory")
        if isinstance(value, Field):
            if f.default is MISSING:
                type.__delattr__(cls, name)
            else:
                type.__setattr__(cls, name, f.default)
        fields.append(f)
    fields = tuple(fields)
    cls.__record_fields__ = fields
    cls.__record_frozen__ = frozen
    cls.__dataclass_fields__ = _DataclassFields()
    cls.__match_args__ = tuple(f.name for f in fields if f.init)

    def set_new(name, value):
        if name not in own:
            setattr(cls, name, value)

    set_new("__init__", _make_init(cls, fields, frozen))
    shown = [f.name for f in fields if f.repr]

    def __repr__(self):
        return f"{type(self).__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in shown) + ")"

    set_new("__repr__", __repr__)
    compared = [f.name for f in fields if f.compare]
    key = _tuple_getter(compared)

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    set_new("__eq__", __eq__)
    if frozen:
        if "__hash__" not in own:
            cls.__hash__ = lambda self: hash(key(self))
        names = frozenset(f.name for f in fields)

        def __setattr__(self, name, value):
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(cls, self).__setattr__(name, value)

        def __delattr__(self, name):
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(cls, self).__delattr__(name)

        for name, fn in (("__setattr__", __setattr__), ("__delattr__", __delattr__)):
            if name in own:
                raise TypeError(f"cannot overwrite attribute {name} in class {cls.__name__}")
            fn.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, fn)
    elif "__hash__" not in own:
        cls.__hash__ = None  # mutable and compared by value: unhashable, as a dataclass
    for name in ("__repr__", "__eq__"):
        fn = cls.__dict__[name]
        if fn.__qualname__.startswith("_build."):
            fn.__qualname__ = f"{cls.__qualname__}.{name}"
    return cls


def _tuple_getter(names: list[str]):
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return attrgetter(*names)


def _make_init(cls, fields, frozen: bool):
    """``__init__`` with the fields as its parameters (compiled, as
    dataclasses does, so that its signature and errors are a function's)."""
    globals_ = {"MISSING": MISSING, "__object_setattr": object.__setattr__}
    params, body = [], []
    seen_default = False
    for i, f in enumerate(fields):
        if f.init:
            if f.default is not MISSING or f.default_factory is not MISSING:
                seen_default = True
                globals_[f"__d{i}"] = MISSING if f.default_factory is not MISSING else f.default
                params.append(f"{f.name}=__d{i}")
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            else:
                params.append(f.name)
        if f.default_factory is not MISSING:
            globals_[f"__f{i}"] = f.default_factory
            value = f"__f{i}() if {f.name} is MISSING else {f.name}" if f.init else f"__f{i}()"
        elif f.init:
            value = f.name
        elif f.default is not MISSING:
            globals_[f"__d{i}"] = f.default
            value = f"__d{i}"
        else:
            continue
        if frozen:
            body.append(f"    __object_setattr(self, {f.name!r}, {value})")
        else:
            body.append(f"    self.{f.name} = {value}")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    if not params:
        source = source.replace("(self, )", "(self)")
    namespace: dict = {}
    exec(_init_code(source), globals_, namespace)  # noqa: S102 - built from the class's own field names
    fn = namespace["__init__"]
    fn.__qualname__ = f"{cls.__qualname__}.__init__"
    fn.__module__ = cls.__module__
    return fn


# Compiling each record's __init__ is most of what making a record costs, in
# every run: the code objects are kept between runs as bytecode is
# (picoproc.cache), keyed by this module and the Python version, one file
# for all records (at most _MAX_KEPT: classes that changed leave theirs).
_MAX_KEPT = 256
_kept: dict | None = None
_kept_key = ""


def _init_code(source: str):
    global _kept, _kept_key
    from picoproc import cache

    if _kept is None:
        _kept_key = cache.content_key([__file__, sys.version.encode()])
        _kept = cache.load(__file__, "records", _kept_key, ".marshal", _decode_kept) or {}
    code = _kept.get(source)
    if code is None:
        code = compile(source, "<record __init__>", "exec")
        if len(_kept) >= _MAX_KEPT:
            _kept = {}
        _kept[source] = code
        cache.store(__file__, "records", _kept_key, ".marshal", marshal.dumps(_kept))
    return code


_CODE = type(_init_code.__code__)


def _decode_kept(data: bytes) -> dict:
    try:
        kept = marshal.loads(data)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(kept, dict) or not all(isinstance(k, str) and isinstance(v, _CODE)
                                             for k, v in kept.items()):
        raise ValueError("not a table of compiled __init__ methods")
    return kept

