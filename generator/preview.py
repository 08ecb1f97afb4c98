"""Contact sheets: a grid of a split's images captioned with label and key attributes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from generator.attributes import LABELS
from generator.dataset import DatasetFolder
from xaistudy.errors import UserError
from xaistudy.files import atomic_path

COLUMNS = 8


def caption(row) -> str:
    """Three short lines: class (and the intervened factor), arms and color, shape and bg."""
    first = LABELS[int(row["label"])]
    intervened = row.get("intervened")
    if isinstance(intervened, str) and intervened:
        first += f" [{intervened}]"
    return (
        f"{first}\narm {row['arm_position']:.2f}  col {row['obj_color']:.2f}\n"
        f"sph {row['spherical']:.2f}  bg {row['bg_color']:.2f}"
    )


def write_contact_sheet(
    dataset: Path, out: Path, split: str = "test", n: int = 48, columns: int = COLUMNS
) -> Path:
    """Write a PNG grid of the first ``n`` images of ``split`` of ``dataset``; return ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    data = DatasetFolder(dataset).split(split)
    n = min(n, len(data))
    if n == 0:
        raise UserError(f"split {split!r} of {dataset} has no images")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"contact sheet {out} must be a .png file")
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.3 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index >= n:
            continue
        axis.imshow(np.asarray(data.images[index]), interpolation="nearest")
        axis.set_title(caption(data.params.iloc[index]), fontsize=7, family="monospace")
    figure.suptitle(f"{Path(dataset).name} / {split}: {n} of {len(data)} images", fontsize=10)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as partial:
        figure.savefig(partial, dpi=100, format="png")
    plt.close(figure)
    return out
