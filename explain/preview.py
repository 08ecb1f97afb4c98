"""``xaistudy bundle preview``: one PNG per condition showing what a participant sees.

Reads the bundle through :mod:`explain.bundle_format` only (no torch): title,
description, column and row labels, and the stimuli in their grid. When the manifest
holds ``validation``, ``validation.png`` shows its table and the counterfactual cells
that fail a check are framed red.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from explain.bundle_format import verify_bundle  # noqa: E402
from explain.manifest import ANIMALS, Condition, Tutorial, Validation  # noqa: E402
from explain.validation import format_table  # noqa: E402

CELL_INCHES = 1.3


def _read(bundle: Path, rel: str):
    with Image.open(bundle / rel) as image:
        return image.convert("RGB").copy()


def failing_cells(validation: Validation | None) -> set[tuple[int, int]]:
    """(row, column) of the counterfactual images that fail a check of ``validation``:
    on the wrong side, too far from the target, or too many clipped pixel values."""
    if not validation or not validation.counterfactuals:
        return set()
    limits = validation.thresholds
    return {
        (cell.row, cell.column)
        for cell in validation.counterfactuals.cells
        if cell.wrong_side
        or cell.error > limits["max_stored_logit_error"]
        or cell.clipped_fraction > limits["max_clipped_fraction"]
    }


def preview_condition(
    bundle: Path, name: str, condition: Condition, out: Path, failing: set | frozenset = frozenset()
) -> Path:
    """Draw one condition's grid with its labels to ``out`` (PNG); cells in ``failing``
    ((row, column) pairs) get a red frame."""
    layout = condition.layout
    rows, columns = layout.rows, layout.columns
    grid = condition.grid()
    per_cell = max(len(cell) for row in grid for cell in row)  # an attribution cell: 2
    description = textwrap.wrap(condition.description, 100)
    # Sizes in inches: a text header, a column of row labels, cells of square pictures.
    header, labels, margin = 0.6 + 0.16 * len(description), 1.8, 0.3
    width = labels + columns * CELL_INCHES * per_cell + margin
    height = header + 0.35 + rows * CELL_INCHES + margin
    figure, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
    figure.subplots_adjust(
        left=labels / width,
        right=1 - margin / width,
        top=1 - (header + 0.35) / height,
        bottom=margin / height,
        wspace=0.08,
        hspace=0.3,
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for stimulus in (cell[0] for row in grid for cell in row if cell):
        ax = axes[stimulus.row][stimulus.column]
        pictures = _side_by_side(bundle, grid[stimulus.row][stimulus.column])
        ax.imshow(pictures, interpolation="nearest")
        logit = getattr(stimulus, "logit", None)  # baseline, counterfactual, attribution cells
        if logit is not None:
            ax.set_xlabel(f"{logit:+.2f}", fontsize=7, labelpad=1)
        if (stimulus.row, stimulus.column) in failing:
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color("red")
                spine.set_linewidth(3)
    for column, label in enumerate(layout.column_labels):
        axes[0][column].set_title("\n".join(textwrap.wrap(label, 18)), fontsize=8)
    for row, label in enumerate(layout.row_labels):
        # short lines: a rotated label must fit beside its own row, not run into the next
        axes[row][0].set_ylabel("\n".join(textwrap.wrap(label, 17)), fontsize=7)
    top = 1 - 0.15 / height
    figure.text(0.01, top, condition.title or name, fontsize=11, weight="bold", va="top")
    figure.text(0.01, top - 0.3 / height, "\n".join(description), fontsize=8, va="top")
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


def _side_by_side(bundle: Path, cell: list) -> np.ndarray:
    """A grid cell's pictures in a row (a scene and its map; participants see the map
    under the scene), each scaled to the first one's size, 2 white pixels apart."""
    pictures = [_read(bundle, s.image) for s in cell]
    size = pictures[0].size  # (width, height)
    scaled = [np.asarray(p.resize(size, Image.NEAREST)) for p in pictures]
    gap = np.full((size[1], 2, 3), 255, dtype=np.uint8)
    return np.concatenate([part for p in scaled for part in (p, gap)][:-1], axis=1)


def preview_tutorial(bundle: Path, tutorial: Tutorial, out: Path) -> Path:
    """The tutorial's animal examples and attribute rows in one sheet."""
    rows = [(f"{animal} examples", tutorial.examples[animal]) for animal in ANIMALS]
    rows += [(key, entry.images) for key, entry in tutorial.attributes.items()]
    columns = max(len(items) for _, items in rows)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(columns * 1.2 + 1.5, len(rows) * 1.4 + 0.6), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for row, (label, items) in enumerate(rows):
        for column, stimulus in enumerate(items):
            ax = axes[row][column]
            ax.imshow(_read(bundle, stimulus.image), interpolation="nearest")
            ax.set_title("\n".join(textwrap.wrap(stimulus.caption, 16)), fontsize=6)
        axes[row][0].text(
            -0.15, 0.5, label, transform=axes[row][0].transAxes, ha="right", va="center", fontsize=8
        )
    figure.suptitle("Tutorial", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


def preview_validation(validation: Validation, out: Path) -> Path:
    """The validation table (:func:`explain.validation.format_table`) as a PNG."""
    text = format_table(validation)
    height = 0.8 + 0.135 * (text.count("\n") + 1)  # inches: a title, then 7.5 pt lines
    figure = plt.figure(figsize=(10.5, height))
    color = "black" if validation.passed else "darkred"
    figure.text(0.01, 0.99, "Validation", fontsize=11, weight="bold", va="top")
    figure.text(
        0.01, 1 - 0.45 / height, text, family="monospace", fontsize=7.5,
        va="top", color=color,
    )  # fmt: skip
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


def preview_bundle(bundle: Path, out_dir: Path | None = None) -> list[Path]:
    """Verify ``bundle`` and write ``<condition>.png`` for each condition plus
    ``tutorial.png`` (and ``validation.png`` when the manifest has ``validation``) into
    ``out_dir`` (default: ``<bundle>-preview`` beside the bundle)."""
    bundle = Path(bundle)
    manifest = verify_bundle(bundle)
    out_dir = Path(out_dir) if out_dir else bundle.with_name(f"{bundle.name}-preview")
    out_dir.mkdir(parents=True, exist_ok=True)
    validation = manifest.validation
    failing = failing_cells(validation)
    written = [
        preview_condition(
            bundle,
            name,
            condition,
            out_dir / f"{name}.png",
            failing if name == "counterfactuals" else frozenset(),
        )  # fmt: skip
        for name, condition in manifest.conditions.items()
    ]
    written.append(preview_tutorial(bundle, manifest.tutorial, out_dir / "tutorial.png"))
    if validation:
        written.append(preview_validation(validation, out_dir / "validation.png"))
    return written
