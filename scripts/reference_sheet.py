"""Side-by-side sheet of Two4Two's Blender renders and ours, with block masks and IoU.

Usage: ``.venv/bin/python scripts/reference_sheet.py [--count 8] [--out PATH]``; writes
``docs/images/renderer-vs-two4two.png`` by default and prints the mean block IoU over all
reference scenes and the RMS color difference on block edges (anti-aliasing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from generator.attributes import ATTRIBUTES
from generator.render import render_scenes
from generator.twofortwo import block_iou, edge_rms
from xaistudy.files import atomic_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = Path("/work/shared/reference/two4two-blender")
DEFAULT_OUT = ROOT / "docs" / "images" / "renderer-vs-two4two.png"


def load_reference(folder: Path):
    """All reference scenes: parameters, images (N, 128, 128, 3), masks (N, 128, 128)."""
    rows = [json.loads(line) for line in (folder / "parameters.jsonl").read_text().splitlines()]
    images = np.stack(
        [np.array(Image.open(folder / "images" / f"{r['id']}.png"))[..., :3] for r in rows]
    )
    masks = np.stack(
        [np.array(Image.open(folder / "images" / f"{r['id']}_mask.png")) for r in rows]
    )
    return pd.DataFrame(rows)[list(ATTRIBUTES)], images, masks


def write_sheet(out: Path, picks, ref_images, ref_masks, images, masks, scores) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    # background black, blocks 1..8 in distinct colors
    block_colors = ListedColormap(["black", *plt.get_cmap("tab10").colors[:8]])
    titles = ("Two4Two (Blender)", "ours", "Two4Two mask", "our mask")
    fig, axes = plt.subplots(len(picks), 4, figsize=(8, 2.1 * len(picks)), squeeze=False)
    for row, index in enumerate(picks):
        panels = (ref_images[index], images[index], ref_masks[index], masks[index])
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            if panel.ndim == 2:
                ax.imshow(panel, cmap=block_colors, vmin=-0.5, vmax=8.5, interpolation="nearest")
            else:
                ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=9)
        axes[row, 0].set_ylabel(f"IoU {scores[index]:.2f}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as partial:
        fig.savefig(partial, dpi=110, format="png")
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    params, ref_images, ref_masks = load_reference(args.reference)
    images, masks = render_scenes(params, size=128)
    scores = np.array([block_iou(a, b) for a, b in zip(masks, ref_masks, strict=True)])
    print(
        f"block IoU over {len(scores)} reference scenes: mean {scores.mean():.3f}, "
        f"median {np.median(scores):.3f}, min {scores.min():.3f}"
    )
    edge_error = edge_rms(images, ref_images, masks, ref_masks)
    print(f"RMS color difference on block edges: {edge_error:.2f}/255")
    # spread the picks over the range of IoU, worst included, so the sheet is honest
    order = np.argsort(scores)
    picks = order[np.linspace(0, len(order) - 1, args.count).round().astype(int)]
    write_sheet(args.out, picks, ref_images, ref_masks, images, masks, scores)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
