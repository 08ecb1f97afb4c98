"""How predictive each attribute of a bias specification is of the label, before rendering.

For every attribute a one-attribute classifier (a shallow decision tree, so that
non-monotone relations count too) is fitted on half of a sample of scenes and scored
on the other half. 0.5 is chance; 1.0 means the attribute alone gives the class away.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from generator.biases import SPEC_ATTRIBUTES, BiasSpec


def predictiveness(params: pd.DataFrame, max_depth: int = 4, seed: int = 0) -> pd.DataFrame:
    """Per attribute: held-out ``accuracy`` of a one-attribute classifier, the
    ``correlation`` (Pearson) with the label, and ``beyond_arms``: how much the attribute
    adds to the arm position (accuracy of a classifier on both minus arms alone; NaN for
    the arm position itself). Sorted, most predictive first.

    ``params``: a scene table with ``label`` and the attributes (N rows, N >= 10).
    """
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    labels = params["label"].to_numpy()
    rows = []
    train, test = train_test_split(
        np.arange(len(params)), test_size=0.5, random_state=seed, stratify=labels
    )

    def held_out_accuracy(columns: list[str]) -> float:
        x = params[columns].to_numpy(dtype=float)
        tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed)
        tree.fit(x[train], labels[train])
        return float((tree.predict(x[test]) == labels[test]).mean())

    arms_alone = held_out_accuracy(["arm_position"])
    for name in SPEC_ATTRIBUTES:
        values = params[name].to_numpy(dtype=float)
        correlation = float(np.corrcoef(values, labels)[0, 1]) if values.std() > 0 else 0.0
        beyond = (
            np.nan
            if name == "arm_position"
            else held_out_accuracy(["arm_position", name]) - arms_alone
        )
        rows.append(
            {
                "attribute": name,
                "accuracy": held_out_accuracy([name]),
                "correlation": correlation,
                "beyond_arms": beyond,
            }
        )
    table = pd.DataFrame(rows).sort_values("accuracy", ascending=False, kind="stable")
    return table.reset_index(drop=True)


def describe_distribution(table) -> str:
    """One-line text of a distribution table, e.g. ``uniform(low=0, high=0.52)``."""
    if not isinstance(table, dict):
        return repr(table)
    params = ", ".join(
        f"{k}={_number(v)}" for k, v in table.items() if k not in ("dist", "transform")
    )
    text = f"{table.get('dist', '?')}({params})"
    if "transform" in table:
        text += f" then x -> {table['transform']}"
    return text


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_spec(spec: BiasSpec) -> str:
    """The specification as readable text: one block per attribute."""
    data = spec.to_dict()
    lines = [f"bias specification: {spec.name}"]
    if spec.description:
        lines.append(f"  {spec.description}")
    lines.append(f"sampling order: {', '.join(spec.order)}")
    for name, table in data["attributes"].items():
        lines.append(f"{name}:")
        per_class = {k: v for k, v in table.items() if k in ("peaky", "stretchy")}
        dist_keys = {
            k: v
            for k, v in table.items()
            if k not in ("peaky", "stretchy", "depends_on", "mix_uniform", "mix", "intervened")
        }
        if per_class:
            for label, dist in per_class.items():
                lines.append(f"  {label:<9} {describe_distribution(dist)}")
        else:
            lines.append(f"  {'both':<9} {describe_distribution(dist_keys)}")
        parents = sorted(spec.attributes[name].depends_on)
        if parents:
            lines.append(f"  depends on {', '.join(parents)}")
        if "mix_uniform" in table:
            lines.append(f"  with probability {table['mix_uniform']} replaced by a uniform draw")
        if "mix" in table:
            mix = {k: v for k, v in table["mix"].items() if k != "p"}
            lines.append(
                f"  with probability {table['mix']['p']} redrawn from {describe_distribution(mix)}"
            )
        if "intervened" in table:
            lines.append(f"  intervened: {describe_distribution(table['intervened'])}")
        else:
            lines.append("  intervened: its marginal (fresh class and parents)")
    return "\n".join(lines)


def format_predictiveness(table: pd.DataFrame, n: int) -> str:
    """The predictiveness table as aligned text with a one-line legend."""
    lines = [
        f"how predictive each attribute is of the label ({n} sampled scenes; "
        "accuracy of a one-attribute classifier on held-out scenes, 0.5 = chance;",
        "  'beyond arms': accuracy gained over the arm position alone by adding the attribute):",
        f"  {'attribute':<20} {'accuracy':>8} {'corr':>7} {'beyond arms':>12}",
    ]
    for row in table.itertuples():
        bar = "#" * round(max(0.0, row.accuracy - 0.5) * 40)
        beyond = "" if np.isnan(row.beyond_arms) else f"{row.beyond_arms:+.3f}"
        numbers = f"{row.accuracy:>8.3f} {row.correlation:>7.3f} {beyond:>12}"
        lines.append(f"  {row.attribute:<20} {numbers}  {bar}")
    return "\n".join(lines)
