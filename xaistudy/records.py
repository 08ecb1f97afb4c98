"""JSON records: frozen dataclasses that read and write one JSON object each.

The contracts between the stages (the study bundle's manifest, the model card) are
classes of :class:`Record`. ``Cls.from_json(data)`` is the validation: every key is
checked against the field's type, and the first problem raises one error naming the key
path and what is allowed::

    invalid bundle manifest: conditions.baseline.layout.rows must be an integer, not 'x'
    invalid bundle manifest: conditions.cats is not a known condition (allowed: ...)

``record.to_json()`` gives the same JSON back: ``Cls.from_json(x).to_json() == x``.

Field types: ``int``, ``float`` (an integer is kept as it is), ``str``, ``bool``,
``Any`` (any JSON, unchecked), ``Literal[...]``, ``X | None`` (null allowed),
``tuple[X, ...]`` and ``tuple[X, Y]`` (a JSON list), ``dict[str, X]`` (a JSON object)
and other records. :func:`key` adds what a type cannot say: a key that may be absent, a
list or object that must not be empty, the keys an object may have.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal, Self, get_args, get_origin, get_type_hints

from xaistudy.errors import UserError

_NONE = type(None)


class Invalid(Exception):
    """One problem at one key path, raised while parsing; ``from_json`` words it."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path} {problem}" if path else problem)
        self.path, self.problem = path, problem


def key(
    *,
    optional: bool = False,
    nonempty: bool = False,
    allowed: Iterable[str] | None = None,
    noun: str = "key",
    parse: Callable[[Any, str], Any] | None = None,
    dump: Callable[[Any], Any] | None = None,
) -> Any:
    """A field with more than its type says.

    ``optional``: the key may be absent (the field is then None and the key is not
    written; null is not allowed). ``nonempty``: the list or object has at least one
    entry. ``allowed``: the keys the object may have, each ``noun`` in messages.
    ``parse(value, path)`` and ``dump(value)`` convert a field that is not a record.
    """
    metadata = {
        "optional": optional,
        "nonempty": nonempty,
        "allowed": tuple(allowed) if allowed is not None else None,
        "noun": noun,
        "parse": parse,
        "dump": dump,
    }
    if optional:
        return dataclasses.field(default=None, metadata=metadata)
    return dataclasses.field(metadata=metadata)


def join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(tp: Any) -> str:
    """What a type allows, in words."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return "any JSON value"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(show(a) for a in args)
    if origin is tuple or tp is tuple:
        return "a list"
    if origin is dict or tp is dict or (isinstance(tp, type) and issubclass(tp, Record)):
        return "an object"
    return {
        int: "an integer",
        float: "a number",
        str: "text",
        bool: "true or false",
        _NONE: "null",
    }[tp]


def parse(tp: Any, value: Any, path: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``; raises :class:`Invalid` naming ``path``."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        for option in args:
            if option is _NONE:
                continue
            try:
                return parse(option, value, path)
            except Invalid as exc:
                if exc.path != path:  # the value had the option's shape but a wrong part
                    raise
        raise Invalid(path, f"must be {describe(tp)}, not {show(value)}")
    if origin is Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return value
        raise Invalid(path, f"must be {describe(tp)}, not {show(value)}")
    if origin is tuple:
        if not isinstance(value, list):
            raise Invalid(path, f"must be a list, not {show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse(args[0], v, join(path, i)) for i, v in enumerate(value))
        if len(value) != len(args):
            raise Invalid(path, f"must be a list of {len(args)}, not of {len(value)}")
        return tuple(
            parse(a, v, join(path, i)) for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise Invalid(path, f"must be an object, not {show(value)}")
        return {k: parse(args[1], v, join(path, k)) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.parse_json(value, path)
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise Invalid(path, f"must be {describe(tp)}, not {show(value)}")
    return value


def dump(value: Any) -> Any:
    """The JSON form of a parsed value."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """Base of the frozen dataclasses that are one JSON object each (keys = fields)."""

    json_noun: ClassVar[str] = "record"  # "invalid <json_noun>: ..."
    json_error: ClassVar[type[Exception]] = UserError
    json_key_noun: ClassVar[str] = "key"  # "x.y is not a known <json_key_noun>"

    @classmethod
    def from_json(cls, data: Any) -> Self:
        """Parse and check ``data``; the one error names the key path and what is allowed."""
        try:
            return cls.parse_json(data, "")
        except Invalid as exc:
            raise cls.json_error(f"invalid {cls.json_noun}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            dumper = f.metadata.get("dump")
            out[f.name] = dumper(value) if dumper else dump(value)
        return out

    @classmethod
    def parse_json(cls, data: Any, path: str) -> Self:
        if not isinstance(data, dict):
            raise Invalid(path, f"must be an object, not {show(data)}")
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        for name in data:
            if name not in names:
                raise Invalid(
                    join(path, name),
                    f"is not a known {cls.json_key_noun} (allowed: {', '.join(names)})",
                )
        if cls not in _HINTS:
            _HINTS[cls] = get_type_hints(cls)
        hints = _HINTS[cls]
        values = {}
        for f in fields:
            where, meta = join(path, f.name), f.metadata
            if f.name not in data:
                if meta.get("optional"):
                    continue
                raise Invalid(where, "is missing")
            tp = hints[f.name]
            if meta.get("optional") and get_origin(tp) in (typing.Union, types.UnionType):
                rest = tuple(a for a in get_args(tp) if a is not _NONE)  # absent, never null
                tp = rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
            raw, allowed = data[f.name], meta.get("allowed")
            if allowed is not None and isinstance(raw, dict):
                for name in raw:
                    if name not in allowed:
                        raise Invalid(
                            join(where, name),
                            f"is not a known {meta['noun']} (allowed: {', '.join(allowed)})",
                        )
            parser = meta.get("parse")
            value = parser(raw, where) if parser else parse(tp, raw, where)
            if meta.get("nonempty") and not value:
                raise Invalid(where, "is empty")
            values[f.name] = value
        record = cls(**values)
        record.check(path)
        return record

    def check(self, path: str) -> None:
        """Checks across fields after parsing; raise :class:`Invalid` naming the key."""
