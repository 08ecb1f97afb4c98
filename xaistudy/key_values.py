"""Settings given on the command line as ``key=value,key=value`` or as a TOML file."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from xaistudy.errors import UserError


def read_key_values(text: str, what: str, section: str, example: str) -> dict:
    """The raw ``{key: value}`` of ``text``: a ``.toml`` path (keys at the top level or
    under ``[section]``) or ``key=value,...``. ``what`` names the settings in messages,
    ``example`` shows the inline form. Values stay as given; the caller converts them."""
    if text.endswith(".toml"):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"{what} file {path} does not exist")
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{what} file {path} is not valid TOML: {exc}") from exc
        return values.get(section, values)
    values = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"{what} item {item!r} is not key=value; e.g. {example}")
        values[key.strip()] = value.strip()
    return values


# Field annotations (strings under ``from __future__ import annotations``) -> converters.
_CONVERTERS = {"float": float, "int": int, "str": str}


def dataclass_values(cls, values: dict, what: str) -> dict:
    """``values`` checked against the fields of the dataclass ``cls`` and converted to
    their types (``float``, ``int``, ``str``); an unknown key or a value that does not
    convert is one :class:`UserError` naming it and what is allowed."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(
            f"unknown {what} key(s) {', '.join(unknown)}; allowed are {', '.join(known)}"
        )
    parsed = {}
    for key, value in values.items():
        annotation = known[key].type
        kind = _CONVERTERS[annotation if isinstance(annotation, str) else annotation.__name__]
        try:
            parsed[key] = kind(value)
        except (TypeError, ValueError) as exc:
            noun = "number" if kind is float else kind.__name__
            raise UserError(f"{what} {key}={value!r} is not a {noun}") from exc
    return parsed
