"""Bias specifications: how each scene attribute is drawn, written as TOML data.

A specification names, for every attribute, a distribution (``uniform``,
``truncnorm``, ``beta``, ``constant``, ``bernoulli``), optionally one per class
(``peaky``/``stretchy`` tables), optionally with parameters that are expressions over
other attributes (:mod:`generator.expressions`), optionally mixed with a second
distribution (``mix_uniform = p`` or ``mix = {p = ..., dist = ...}``), and optionally
with an explicit ``intervened`` distribution used for ground truth. Attributes a
specification leaves out are drawn as in the ``unbiased`` preset (Two4Two's defaults).
docs/biases.md describes the format with the ``iclr2022`` preset as the worked example.

Example::

    spec = load_spec("iclr2022")
    params = spec.sample(1000, np.random.default_rng(0))  # DataFrame, one row a scene
"""

from __future__ import annotations

import copy
import graphlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from generator.attributes import ATTRIBUTES, CONTINUOUS, LABELS, RANGES, TOLERANCE
from generator.expressions import Expression
from xaistudy.errors import UserError

SPEC_ATTRIBUTES = (*CONTINUOUS, "fliplr")  # obj_name is the label: drawn balanced, not specified
EXPRESSION_NAMES = frozenset({*SPEC_ATTRIBUTES, "label"})
TOP_LEVEL_KEYS = ("name", "description", "attributes")
ATTRIBUTE_KEYS = ("depends_on", "mix_uniform", "mix", "intervened", *LABELS)

# distribution -> (required parameters, optional parameters)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uniform": ((), ("low", "high")),
    "truncnorm": (("mean", "std"), ("low", "high")),
    "beta": (("a", "b"), ("low", "high")),
    "constant": (("value",), ()),
    "bernoulli": (("p",), ()),
}
BOOLEAN_DISTRIBUTIONS = ("bernoulli", "constant")
DEFAULTS_PRESET = "unbiased"


def _presets_dir():
    return resources.files("generator") / "presets"


def list_presets() -> list[str]:
    """Names of the presets shipped with the package, e.g. ``['color-bias', 'iclr2022', ...]``."""
    return sorted(p.name[:-5] for p in _presets_dir().iterdir() if p.name.endswith(".toml"))


def _format_range(low: float, high: float) -> str:
    return f"[{low:.6g}, {high:.6g}]"


@dataclass
class Distribution:
    """One distribution of one attribute (one class, a mixture part, or intervened).

    ``params`` hold floats or :class:`Expression` s; ``where`` is the TOML key path
    used in error messages, e.g. ``attributes.obj_color.stretchy``.
    """

    attribute: str
    kind: str
    params: dict[str, float | Expression]
    transform: Expression | None
    where: str

    @property
    def names(self) -> set[str]:
        """Attributes (and ``label``) the parameters read."""
        used: set[str] = set()
        for value in self.params.values():
            if isinstance(value, Expression):
                used |= value.names
        if self.transform is not None:
            used |= self.transform.names - {"x"}
        return used

    def _value(self, key: str, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        param = self.params[key]
        result = param.evaluate(values) if isinstance(param, Expression) else param
        result = np.broadcast_to(np.asarray(result, dtype=float), (n,))
        if not np.all(np.isfinite(result)):
            raise UserError(f"{self.where}.{key} evaluates to a non-finite number for some scenes")
        return result

    def sample(
        self, n: int, values: Mapping[str, np.ndarray], rng: np.random.Generator
    ) -> np.ndarray:
        """Draw ``n`` values; ``values[name]`` are the (N,) parents of these ``n`` scenes."""
        if n == 0:
            return np.empty(0, dtype=bool if self.attribute == "fliplr" else float)
        draw = getattr(self, f"_sample_{self.kind}")
        x = draw(n, values, rng)
        if self.transform is not None:
            x = self.transform.evaluate({**values, "x": x})
            x = np.broadcast_to(np.asarray(x, dtype=float), (n,)).copy()
        return x

    def _bounds(self, n, values) -> tuple[np.ndarray, np.ndarray]:
        low, high = self._value("low", values, n), self._value("high", values, n)
        bad = low > high + TOLERANCE
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{self.where}: low > high for {int(bad.sum())} scene(s) "
                f"(e.g. low={low[i]:.6g}, high={high[i]:.6g}); the range must not be empty"
            )
        return low, np.maximum(low, high)

    def _sample_uniform(self, n, values, rng):
        low, high = self._bounds(n, values)
        return rng.uniform(low, high)

    def _sample_truncnorm(self, n, values, rng):
        low, high = self._bounds(n, values)
        mean, std = self._value("mean", values, n), self._value("std", values, n)
        if (std <= 0).any():
            raise UserError(f"{self.where}.std must be > 0 for every scene")

        def exact(rows):  # inverse CDF; truncnorm is undefined on a point, hence `empty`
            empty = high[rows] - low[rows] <= TOLERANCE
            a = (low[rows] - mean[rows]) / std[rows]
            b = np.where(empty, a + 1.0, (high[rows] - mean[rows]) / std[rows])
            x = scipy.stats.truncnorm.rvs(
                a, b, loc=mean[rows], scale=std[rows], size=len(a), random_state=rng
            )
            return np.where(empty, low[rows], x)

        x = _rejection(n, lambda rows: rng.normal(mean[rows], std[rows]), low, high, exact)
        return np.clip(x, low, high)

    def _sample_beta(self, n, values, rng):
        low, high = self._bounds(n, values)
        a, b = self._value("a", values, n), self._value("b", values, n)
        if (a <= 0).any() or (b <= 0).any():
            raise UserError(f"{self.where}: a and b must be > 0 for every scene")

        def exact(rows):  # inverse CDF between the CDF values of the bounds
            beta = scipy.stats.beta(a[rows], b[rows])
            return beta.ppf(rng.uniform(beta.cdf(low[rows]), beta.cdf(high[rows])))

        x = _rejection(n, lambda rows: rng.beta(a[rows], b[rows]), low, high, exact)
        return np.clip(x, low, high)

    def _sample_constant(self, n, values, rng):
        return self._value("value", values, n).copy()

    def _sample_bernoulli(self, n, values, rng):
        p = self._value("p", values, n)
        if ((p < 0) | (p > 1)).any():
            raise UserError(f"{self.where}.p must be within [0, 1] for every scene")
        return rng.random(n) < p


def _rejection(n, draw, low, high, exact, rounds: int = 4) -> np.ndarray:
    """Truncated draws: a few rounds of redrawing the rows outside [low, high], then the
    (slower) exact inverse-CDF draw for rows still outside (narrow or far-off ranges)."""
    x = draw(np.arange(n))
    outside = np.flatnonzero((x < low) | (x > high))
    for _ in range(rounds):
        if len(outside) == 0:
            return x
        x[outside] = draw(outside)
        outside = outside[(x[outside] < low[outside]) | (x[outside] > high[outside])]
    if len(outside):
        x[outside] = exact(outside)
    return x


@dataclass
class AttributeSpec:
    """How one attribute is drawn: per class (or shared), mixture, intervened override."""

    name: str
    by_class: dict[int, Distribution]  # label -> distribution; same object for both if shared
    mix_probability: float = 0.0
    mix: Distribution | None = None
    intervened: Distribution | None = None
    depends_on: set[str] = field(default_factory=set)

    def sample(
        self, labels: np.ndarray, values: Mapping[str, np.ndarray], rng: np.random.Generator
    ) -> np.ndarray:
        """Draw one value per scene; ``labels`` (N,) int, ``values`` parents (N,) each."""
        n = len(labels)
        out = np.empty(n, dtype=bool if self.name == "fliplr" else float)
        classes = [None] if self.by_class[0] is self.by_class[1] else [0, 1]
        for label in classes:
            rows = slice(None) if label is None else np.flatnonzero(labels == label)
            subset = {k: np.asarray(v)[rows] for k, v in values.items()}
            dist = self.by_class[0 if label is None else label]
            out[rows] = dist.sample(len(subset["label"]), subset, rng)
        if self.mix is not None and self.mix_probability > 0:
            rows = np.flatnonzero(rng.random(n) < self.mix_probability)
            subset = {k: np.asarray(v)[rows] for k, v in values.items()}
            out[rows] = self.mix.sample(len(rows), subset, rng)
        return out


class BiasSpec:
    """A validated bias specification. Build it with :func:`load_spec`."""

    def __init__(self, data: Mapping[str, Any], preset: str | None = None):
        self.preset = preset
        self._data = _complete_with_defaults(data)
        self.name: str = self._data["name"]
        self.description: str = self._data.get("description", "")
        self.attributes: dict[str, AttributeSpec] = {
            name: _parse_attribute(name, table) for name, table in self._data["attributes"].items()
        }
        self.order = _sampling_order(self.attributes)

    def to_dict(self) -> dict[str, Any]:
        """The full specification (defaults filled in) as plain data, e.g. for meta.json."""
        return copy.deepcopy(self._data)

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Draw ``n`` scenes: columns ``label`` (0/1, balanced) and every attribute.

        Vectorized: 100k scenes take a fraction of a second.
        """
        if n < 0:
            raise UserError(f"number of scenes must be >= 0, got {n}")
        # Balanced classes: exactly half each (the odd one decided by a coin).
        labels = rng.permutation((np.arange(n) + rng.integers(2)) % 2).astype(np.int64)
        values: dict[str, np.ndarray] = {"label": labels}
        for name in self.order:
            values[name] = self.attributes[name].sample(labels, values, rng)
            _check_range(name, values[name], f"attributes.{name}")
        return _frame(values)

    def independent_of_label(self, name: str) -> bool:
        """Whether attribute ``name`` is drawn alike for both classes, and so are the
        attributes it depends on: then it tells nothing about the class."""
        spec = self.attributes[name]
        reads_label = any(
            "label" in dist.names for dist in (*spec.by_class.values(), spec.mix) if dist
        )
        if spec.by_class[0] is not spec.by_class[1] or reads_label:
            return False
        return all(self.independent_of_label(parent) for parent in spec.depends_on)

    def sample_intervened(
        self, attributes: tuple[str, ...] | list[str], n: int, rng: np.random.Generator
    ) -> pd.DataFrame:
        """Draw ``attributes`` for ``n`` scenes independently of class (for ground truth).

        An attribute with an ``intervened`` table is drawn from it; the others take their
        marginal: a fresh scene (fresh class, fresh parents) is drawn and its value kept,
        jointly for the attributes of one call (e.g. ``position_x`` and ``position_y``).
        """
        unknown = [a for a in attributes if a not in self.attributes]
        if unknown:
            raise UserError(
                f"cannot intervene on {', '.join(unknown)}: "
                f"allowed are {', '.join(self.attributes)}"
            )
        out: dict[str, np.ndarray] = {}
        marginal = [a for a in attributes if self.attributes[a].intervened is None]
        if marginal:
            fresh = self.sample(n, rng)
            for name in marginal:
                out[name] = fresh[name].to_numpy()
        for name in attributes:
            override = self.attributes[name].intervened
            if override is not None:
                out[name] = override.sample(n, {}, rng)
                _check_range(name, out[name], f"attributes.{name}.intervened")
        return pd.DataFrame({name: out[name] for name in attributes})

    def __repr__(self) -> str:
        return f"BiasSpec({self.name!r})"


def load_spec(source: str | Path | Mapping[str, Any]) -> BiasSpec:
    """Load a preset name, a path to a ``.toml`` file, or a spec dict (e.g. from meta.json)."""
    if isinstance(source, Mapping):
        return BiasSpec(source)
    if source is None:
        raise UserError("no bias specification given: name a preset or a .toml file")
    text = str(source)
    if text in list_presets():
        data = tomllib.loads((_presets_dir() / f"{text}.toml").read_text())
        return BiasSpec(data, preset=text)
    path = Path(text)
    if not path.suffix == ".toml" and not path.exists():
        raise UserError(
            f"unknown preset {text!r}: available are {', '.join(list_presets())}, "
            "or give the path of a .toml file"
        )
    try:
        raw = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read bias specification {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    return BiasSpec(data)


def _frame(values: dict[str, np.ndarray]) -> pd.DataFrame:
    labels = values["label"]
    columns: dict[str, Any] = {
        "label": labels,
        "obj_name": np.asarray(LABELS, dtype=object)[labels],
    }
    for name in ATTRIBUTES[1:]:
        columns[name] = values[name]
    frame = pd.DataFrame(columns)
    frame["fliplr"] = frame["fliplr"].astype(bool)
    return frame[["label", *ATTRIBUTES]]


def _check_range(name: str, values: np.ndarray, where: str) -> None:
    if name not in RANGES:
        return
    low, high = RANGES[name]
    bad = ~((values >= low - TOLERANCE) & (values <= high + TOLERANCE))
    if bad.any():
        example = values[np.flatnonzero(bad)[0]]
        raise UserError(
            f"{where} draws values outside the valid range of {name} "
            f"{_format_range(low, high)} (e.g. {example:.6g} in {int(bad.sum())} scene(s)); "
            "narrow its low/high or transform"
        )
    np.clip(values, low, high, out=values)  # remove float noise within TOLERANCE


# --- parsing and validation -------------------------------------------------------------


def _defaults() -> dict[str, Any]:
    text = (_presets_dir() / f"{DEFAULTS_PRESET}.toml").read_text()
    return tomllib.loads(text)["attributes"]


def _complete_with_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise UserError("a bias specification must be a TOML table")
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(unknown)} in the bias specification; "
            f"allowed are {', '.join(TOP_LEVEL_KEYS)}"
        )
    name = data.get("name", "custom")
    if not isinstance(name, str) or not name:
        raise UserError("name must be a non-empty string")
    if not isinstance(data.get("description", ""), str):
        raise UserError("description must be a string")
    attributes = data.get("attributes", {})
    if not isinstance(attributes, Mapping):
        raise UserError("attributes must be a table of [attributes.<name>] tables")
    unknown = sorted(set(attributes) - set(SPEC_ATTRIBUTES))
    if unknown:
        hint = (
            " (obj_name is the label: classes are always balanced)" if "obj_name" in unknown else ""
        )
        raise UserError(
            f"unknown attribute(s) {', '.join(f'attributes.{u}' for u in unknown)}{hint}; "
            f"allowed are {', '.join(SPEC_ATTRIBUTES)}"
        )
    defaults = _defaults() if set(attributes) != set(SPEC_ATTRIBUTES) else {}
    completed = {a: copy.deepcopy(attributes.get(a, defaults.get(a))) for a in SPEC_ATTRIBUTES}
    result = {"name": name, "attributes": completed}
    if data.get("description"):
        result["description"] = data["description"]
    return result


def _parse_attribute(name: str, table: Any) -> AttributeSpec:
    where = f"attributes.{name}"
    if not isinstance(table, Mapping):
        raise UserError(f"{where} must be a table")
    dist_keys = {"dist", "transform"} | {
        k for req, opt in DISTRIBUTIONS.values() for k in req + opt
    }
    unknown = sorted(set(table) - set(ATTRIBUTE_KEYS) - dist_keys)
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(f'{where}.{u}' for u in unknown)}; allowed are "
            f"{', '.join(ATTRIBUTE_KEYS)} or dist with its parameters"
        )
    per_class = [label for label in LABELS if label in table]
    shared = {k: v for k, v in table.items() if k in dist_keys}
    if per_class and shared:
        raise UserError(
            f"{where}: give either one distribution (dist = ...) or one table per class "
            f"({', '.join(LABELS)}), not both"
        )
    if per_class and len(per_class) != len(LABELS):
        missing = [label for label in LABELS if label not in table]
        raise UserError(
            f"{where}: per-class distributions need a table for {', '.join(missing)} too"
        )
    if per_class:
        by_class = {
            i: _parse_distribution(name, table[label], f"{where}.{label}")
            for i, label in enumerate(LABELS)
        }
    elif shared:
        dist = _parse_distribution(name, shared, where)
        by_class = {0: dist, 1: dist}
    else:
        raise UserError(
            f"{where} needs a distribution: dist = one of {', '.join(DISTRIBUTIONS)}, "
            f"or one table per class ({', '.join(LABELS)})"
        )

    mix_probability, mix = 0.0, None
    if "mix_uniform" in table and "mix" in table:
        raise UserError(f"{where}: give mix_uniform or mix, not both")
    if "mix_uniform" in table:
        mix_probability = _probability(table["mix_uniform"], f"{where}.mix_uniform")
        if name == "fliplr":
            mix = Distribution(name, "bernoulli", {"p": 0.5}, None, f"{where}.mix_uniform")
        else:
            low, high = RANGES[name]
            mix = Distribution(
                name, "uniform", {"low": low, "high": high}, None, f"{where}.mix_uniform"
            )
    if "mix" in table:
        mix_table = table["mix"]
        if not isinstance(mix_table, Mapping) or "p" not in mix_table:
            raise UserError(f"{where}.mix must be a table with p = probability and dist = ...")
        mix_probability = _probability(mix_table["p"], f"{where}.mix.p")
        rest = {k: v for k, v in mix_table.items() if k != "p"}
        mix = _parse_distribution(name, rest, f"{where}.mix")

    intervened = None
    if "intervened" in table:
        intervened = _parse_distribution(name, table["intervened"], f"{where}.intervened")
        if intervened.names:
            raise UserError(
                f"{where}.intervened must not depend on other attributes or the label "
                f"(it reads {', '.join(sorted(intervened.names))}); use numbers only"
            )

    depends_on = table.get("depends_on", [])
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise UserError(f"{where}.depends_on must be a list of attribute names")
    bad = [d for d in depends_on if d not in SPEC_ATTRIBUTES or d == name]
    if bad:
        raise UserError(
            f"{where}.depends_on names {', '.join(bad)}; allowed are the other attributes "
            f"{', '.join(a for a in SPEC_ATTRIBUTES if a != name)}"
        )
    parents = set(depends_on)
    for dist in [*by_class.values(), mix]:
        if dist is not None:
            parents |= dist.names - {"label"}
    if name in parents:
        raise UserError(f"{where} depends on itself")
    return AttributeSpec(name, by_class, mix_probability, mix, intervened, parents)


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise UserError(f"{where} must be a probability within [0, 1], got {value!r}")
    return float(value)


def _parse_distribution(attribute: str, table: Any, where: str) -> Distribution:
    if not isinstance(table, Mapping):
        raise UserError(f'{where} must be a table like {{ dist = "uniform", low = 0, high = 1 }}')
    kind = table.get("dist")
    allowed_kinds = (
        BOOLEAN_DISTRIBUTIONS
        if attribute == "fliplr"
        else tuple(k for k in DISTRIBUTIONS if k != "bernoulli")
    )
    if kind is None:
        raise UserError(f"{where} lacks dist: allowed are {', '.join(allowed_kinds)}")
    if kind not in allowed_kinds:
        raise UserError(
            f"{where}.dist = {kind!r} is not allowed for {attribute}: "
            f"allowed are {', '.join(allowed_kinds)}"
        )
    required, optional = DISTRIBUTIONS[kind]
    allowed_keys = {"dist", *required, *optional} | (
        {"transform"} if attribute != "fliplr" else set()
    )
    unknown = sorted(set(table) - allowed_keys)
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(f'{where}.{u}' for u in unknown)} for dist = {kind!r}; "
            f"allowed are {', '.join(sorted(allowed_keys))}"
        )
    missing = [k for k in required if k not in table]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)} (needed by dist = {kind!r})")

    params: dict[str, float | Expression] = {}
    for key in (*required, *optional):
        if key in table:
            params[key] = _parameter(table[key], f"{where}.{key}", kind, attribute)
    transform = None
    if "transform" in table:
        if not isinstance(table["transform"], str):
            raise UserError(f'{where}.transform must be an expression in x, e.g. "1 - x"')
        transform = Expression(table["transform"], EXPRESSION_NAMES | {"x"}, f"{where}.transform")
    dist = Distribution(attribute, kind, params, transform, where)
    _fill_and_check_static(dist)
    return dist


def _parameter(value: Any, where: str, kind: str, attribute: str) -> float | Expression:
    if attribute == "fliplr" and kind == "constant":
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false for fliplr")
        return float(value)
    if isinstance(value, str):
        return Expression(value, EXPRESSION_NAMES, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{where} must be a number or an expression string, got {value!r}")
    return float(value)


def _fill_and_check_static(dist: Distribution) -> None:
    """Fill default bounds and reject impossible numeric parameters at load time."""
    params, where, name = dist.params, dist.where, dist.attribute
    if dist.kind in ("uniform", "truncnorm"):
        low, high = RANGES[name]
        params.setdefault("low", low)
        params.setdefault("high", high)
    if dist.kind == "beta":
        params.setdefault("low", 0.0)
        params.setdefault("high", 1.0)
        for key in ("low", "high"):
            value = params[key]
            if not isinstance(value, Expression) and not 0 <= value <= 1:
                raise UserError(f"{where}.{key} = {value:.6g} is outside the beta's support [0, 1]")
        for key in ("a", "b"):
            value = params[key]
            if not isinstance(value, Expression) and value <= 0:
                raise UserError(f"{where}.{key} must be > 0, got {value:.6g}")
    if dist.kind == "truncnorm":
        std = params["std"]
        if not isinstance(std, Expression) and std <= 0:
            raise UserError(f"{where}.std must be > 0, got {std:.6g}")
    if dist.kind == "bernoulli":
        p = params["p"]
        if not isinstance(p, Expression) and not 0 <= p <= 1:
            raise UserError(f"{where}.p must be within [0, 1], got {p:.6g}")
    low, high = params.get("low"), params.get("high")
    if isinstance(low, float) and isinstance(high, float) and low > high:
        raise UserError(
            f"{where}: low = {low:.6g} > high = {high:.6g}; the range must not be empty"
        )
    if dist.transform is None and name in RANGES:
        valid_low, valid_high = RANGES[name]
        for key in ("low", "high", "value"):
            value = params.get(key)
            if isinstance(value, float) and not (
                valid_low - TOLERANCE <= value <= valid_high + TOLERANCE
            ):
                raise UserError(
                    f"{where}.{key} = {value:.6g} is outside the valid range of {name} "
                    f"{_format_range(valid_low, valid_high)}"
                )


def _sampling_order(attributes: dict[str, AttributeSpec]) -> list[str]:
    sorter = graphlib.TopologicalSorter({a: sorted(s.depends_on) for a, s in attributes.items()})
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise UserError(
            f"attribute dependencies form a cycle ({cycle}); an attribute can only depend on "
            "attributes drawn before it"
        ) from None
