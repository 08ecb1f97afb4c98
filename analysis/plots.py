"""The report's figures (matplotlib, Agg), each returned as PNG bytes."""

from __future__ import annotations

import io
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
RATING_COLORS = ("#b2182b", "#ef8a62", "#d9d9d9", "#67a9cf", "#2166ac")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _colors(conditions: list[str]) -> dict[str, str]:
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(conditions)}


# Line styles of the trivial strategies' reference lines (analysis.scoring.TRIVIAL_STRATEGIES).
TRIVIAL_STYLES = {
    "relies_on_everything": ("#2166ac", ":", "all 'relies on'"),
    "relies_on_nothing": ("#b2182b", ":", "all 'does not rely on'"),
    "neutral_everything": ("#555555", "-.", "all neutral"),
}


def accuracy_plot(
    by_condition: pd.DataFrame,
    by_cell: pd.DataFrame,
    names: dict[str, str],
    guess: float,
    trivial: pd.DataFrame | None = None,
) -> bytes:
    """Left: accuracy per condition; right: per attribute x condition; 95% intervals.

    ``trivial`` (``analysis.scoring.trivial_strategies``) adds, per condition, a short
    line at the accuracy of each trivial strategy on the left.
    """
    conditions = list(by_condition["condition"])
    colors = _colors(conditions)
    attributes = list(dict.fromkeys(by_cell["attribute"]))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 3.2]}, sharey=True
    )
    for i, row in by_condition.reset_index(drop=True).iterrows():
        left.errorbar(
            i,
            row["accuracy"],
            yerr=[[row["accuracy"] - row["ci_low"]], [row["ci_high"] - row["accuracy"]]],
            fmt="o",
            color=colors[row["condition"]],
            capsize=5,
            markersize=8,
        )
    if trivial is not None:
        _trivial_lines(left, conditions, trivial)
    left.set_xticks(range(len(conditions)), conditions, rotation=20)
    left.set_xlim(-0.6, len(conditions) - 0.4)
    left.set_ylabel("accuracy (share of correct ratings)")
    left.set_title("all attributes")

    width = 0.8 / max(len(conditions), 1)
    for ci, condition in enumerate(conditions):
        cells = by_cell[by_cell["condition"] == condition].set_index("attribute")
        cells = cells.reindex(attributes)
        x = np.arange(len(attributes)) - 0.4 + width * (ci + 0.5)
        right.errorbar(
            x,
            cells["accuracy"],
            yerr=[cells["accuracy"] - cells["ci_low"], cells["ci_high"] - cells["accuracy"]],
            fmt="o",
            color=colors[condition],
            capsize=3,
            label=condition,
        )
    relevant = by_cell.drop_duplicates("attribute").set_index("attribute")["relevant"]
    labels = [
        # Long attribute names wrap so that neighboring labels do not overlap.
        textwrap.fill(names.get(a, a), 14) + f"\n({'relevant' if relevant[a] else 'irrelevant'})"
        for a in attributes
    ]
    right.set_xticks(range(len(attributes)), labels, fontsize=8)
    for i in range(1, len(attributes)):
        right.axvline(i - 0.5, color="#eeeeee", lw=1, zorder=0)
    right.set_title("per attribute (ground truth in brackets)")
    right.legend(loc="lower right", fontsize=8, frameon=False)
    for ax in (left, right):
        ax.axhline(guess, color="gray", ls="--", lw=1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", color="#eeeeee")
    right.text(
        len(attributes) - 0.5,
        guess + 0.01,
        "uniform guessing",
        ha="right",
        va="bottom",
        fontsize=7,
        color="gray",
    )
    return _png(fig)


def _trivial_lines(ax, conditions: list[str], trivial: pd.DataFrame) -> None:
    """Per condition, a line across its slot at each trivial strategy's accuracy."""
    values = trivial.set_index("condition")
    for name, (color, style, label) in TRIVIAL_STYLES.items():
        for i, condition in enumerate(conditions):
            if condition not in values.index:
                continue
            ax.hlines(
                values.loc[condition, name],
                i - 0.4,
                i + 0.4,
                colors=color,
                linestyles=style,
                lw=1.3,
                label=label if i == 0 else None,
                zorder=1,
            )
    # Below the axis: the lines can sit anywhere between 0 and 1.
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25),
        fontsize=7,
        frameon=False,
        title="same answer to every attribute",
        title_fontsize=7,
    )


def rating_plot(answers: pd.DataFrame, attributes: pd.DataFrame, conditions: list[str]) -> bytes:
    """Per attribute, the share of each rating 1..5 by condition (stacked bars)."""
    keys = list(attributes["attribute"])
    names = dict(zip(attributes["attribute"], attributes["name"], strict=True))
    relevant = dict(zip(attributes["attribute"], attributes["relevant"], strict=True))
    counts = (
        answers.groupby(["attribute", "condition", "rating"]).size().unstack("rating", fill_value=0)
    )
    counts = counts.reindex(columns=[1, 2, 3, 4, 5], fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0)
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.2 * cols, 0.45 * len(conditions) * rows + 1.3 * rows),
        squeeze=False,
        sharex=True,
    )
    for ax, key in zip(axes.ravel(), keys, strict=False):
        for yi, condition in enumerate(conditions):
            left = 0.0
            row = shares.loc[(key, condition)] if (key, condition) in shares.index else None
            for rating in range(1, 6):
                value = 0.0 if row is None else float(row[rating])
                ax.barh(
                    yi,
                    value,
                    left=left,
                    color=RATING_COLORS[rating - 1],
                    edgecolor="white",
                    height=0.7,
                )
                left += value
        ax.set_yticks(range(len(conditions)), conditions, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        truth = "relevant" if relevant[key] else "irrelevant"
        ax.set_title(f"{names[key]} ({truth})", fontsize=9)
    for index, ax in enumerate(axes.ravel()[: len(keys)]):
        if index + cols >= len(keys):  # nothing below this panel: it carries the x axis
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("share of ratings", fontsize=8)
    spare = axes.ravel()[len(keys) :]
    for ax in spare:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in RATING_COLORS]
    labels = ["1 does not rely on it", "2", "3", "4", "5 relies on it"]
    if len(spare):  # the legend fills the first empty panel
        spare[0].legend(
            handles,
            labels,
            loc="center",
            frameon=False,
            fontsize=8,
            title="rating",
            title_fontsize=8,
        )
        fig.tight_layout()
    else:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            ncol=5,
            frameon=False,
            fontsize=8,
            bbox_to_anchor=(0.5, -0.04),
        )
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _png(fig)


def ground_truth_plot(ground_truth: pd.DataFrame) -> bytes:
    """Effect of each factor on the model (with interval), colored by relevance."""
    truth = ground_truth.sort_values("effect")
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(truth) + 1.2))
    colors = ["#C44E52" if r else "#8c8c8c" for r in truth["relevant"]]
    y = np.arange(len(truth))
    ax.barh(y, truth["effect"], color=colors)
    low = (truth["effect"] - truth["ci_low"]).clip(lower=0)
    high = (truth["ci_high"] - truth["effect"]).clip(lower=0)
    ax.errorbar(truth["effect"], y, xerr=[low, high], fmt="none", color="black", capsize=3)
    ax.set_yticks(y, truth["factor"], fontsize=8)
    ax.set_xlabel("effect on the model's logit when the factor is redrawn")
    ax.legend(
        [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#C44E52", "#8c8c8c")],
        ["relevant", "irrelevant"],
        frameon=False,
        fontsize=8,
        loc="lower right",
    )
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    return _png(fig)


def page_time_plot(page_times: pd.DataFrame, conditions: list[str]) -> bytes:
    """Median seconds per page by condition (``page_times``: page, condition, median)."""
    pages = list(dict.fromkeys(page_times["page"]))
    colors = _colors(conditions)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(pages) * max(1, len(conditions) / 2) + 1.2))
    height = 0.8 / max(len(conditions), 1)
    for ci, condition in enumerate(conditions):
        values = page_times[page_times["condition"] == condition].set_index("page")
        values = values.reindex(pages)["median"]
        ax.barh(
            np.arange(len(pages)) - 0.4 + height * (ci + 0.5),
            values,
            height=height,
            color=colors[condition],
            label=condition,
        )
    ax.set_yticks(range(len(pages)), pages, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("median seconds on the page")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    return _png(fig)


def power_plot(curve: pd.DataFrame, within: bool = False) -> bytes:
    """Power against participants per condition (``within``: participants, each in every
    condition), one line per comparison."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, ((a, b), rows) in enumerate(curve.groupby(["condition_a", "condition_b"], sort=False)):
        rows = rows.sort_values("n")
        color = PALETTE[i % len(PALETTE)]
        ax.plot(rows["n"], rows["power"], "o-", color=color, label=f"{a} vs {b}")
        ax.fill_between(
            rows["n"], rows["power_ci_low"], rows["power_ci_high"], color=color, alpha=0.15
        )
    ax.axhline(0.8, color="gray", ls="--", lw=1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(
        "participants, each in every condition" if within else "participants per condition"
    )
    ax.set_ylabel("power (share of simulated studies detecting it)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(color="#eeeeee")
    return _png(fig)


def technical_plot(table: pd.DataFrame, scores: list[str]) -> bytes:
    """One panel per technical score: each condition's accuracy (with its interval)
    against the score of its method."""
    columns = min(3, len(scores))
    rows = -(-len(scores) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3.4 * columns, 2.8 * rows), squeeze=False, sharey=True
    )
    colors = _colors(list(table["condition"]))
    for ax, score in zip(axes.flat, scores, strict=False):
        for _, row in table.dropna(subset=[score]).iterrows():
            color = colors[row["condition"]]
            ax.errorbar(
                row[score],
                row["accuracy"],
                yerr=[[row["accuracy"] - row["ci_low"]], [row["ci_high"] - row["accuracy"]]],
                fmt="o",
                color=color,
                capsize=3,
            )
            ax.annotate(row["condition"], (row[score], row["accuracy"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        ax.set_xlabel(score.replace("_", " "), fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("participants' accuracy")
    for ax in list(axes.flat)[len(scores) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


# How each phase of a trial design is drawn: marker, color, offset from the tick.
PHASE_STYLES = {
    "learning": ("s", "#8c8c8c", -0.15),
    "test": ("o", "#4C72B0", 0.15),
    "pre": ("v", "#DD8452", -0.2),
    "post": ("o", "#4C72B0", 0.2),
}


def simulation_plot(
    accuracy: pd.DataFrame,
    conditions: list[str],
    ylabel: str = "simulation accuracy (model's decision predicted)",
    phases: tuple[str, ...] = ("learning", "test"),
) -> bytes:
    """A trial design's accuracy per condition, its ``phases`` side by side, with their
    intervals; the dotted line is chance (half the scenes' decisions right)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(conditions) + 2), 4.0))
    styles = {phase: PHASE_STYLES[phase] for phase in phases}
    if len(phases) == 3:  # three side by side: the middle one at the tick
        styles["learning"] = (*PHASE_STYLES["learning"][:2], 0.0)
    for phase, (marker, color, shift) in styles.items():
        rows = accuracy[accuracy["phase"] == phase].set_index("condition").reindex(conditions)
        x = np.arange(len(conditions)) + shift
        ax.errorbar(
            x,
            rows["accuracy"],
            yerr=[rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]],
            fmt=marker,
            color=color,
            capsize=5,
            markersize=8,
            label=phase,
        )
    ax.axhline(0.5, color="#555555", linestyle=":", label="chance")
    ax.set_xticks(range(len(conditions)), conditions, rotation=20)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower right", frameon=False)
    return _png(fig)


def reliance_plot(reliance: pd.DataFrame, conditions: list[str]) -> bytes:
    """Verification: over-reliance (accepting the model's errors) and under-reliance
    (rejecting its right decisions) per condition in the test, with their intervals."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(conditions) + 2), 4.0))
    test = reliance[reliance["phase"] == "test"].set_index("condition").reindex(conditions)
    styles = {"over_reliance": ("v", "#C44E52", -0.15), "under_reliance": ("^", "#4C72B0", 0.15)}
    for name, (marker, color, shift) in styles.items():
        rate = test[name].astype(float)
        ax.errorbar(
            np.arange(len(conditions)) + shift,
            rate,
            yerr=[rate - test[f"{name}_ci_low"], test[f"{name}_ci_high"] - rate],
            fmt=marker,
            color=color,
            capsize=5,
            markersize=8,
            label=name.replace("_", "-"),
        )
    ax.set_xticks(range(len(conditions)), conditions, rotation=20)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("share of test trials")
    ax.legend(loc="upper right", frameon=False)
    return _png(fig)
