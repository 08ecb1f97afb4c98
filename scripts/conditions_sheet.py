"""The README's picture of the demo's conditions, from a bundle's preview.

Usage: ``.venv/bin/python scripts/conditions_sheet.py demo/bundle [--out PATH]``; runs
``xaistudy bundle preview`` into a temporary folder and puts the sheets of the bundle's
conditions side by side (in the order of ``ALL_CONDITIONS``), cut to a common height (the
top rows), in ``docs/images/conditions.png`` by default.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from explain.bundle_format import load_manifest
from explain.preview import preview_bundle

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "images" / "conditions.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--height", type=int, default=900, help="pixels kept from the top")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        preview_bundle(args.bundle, Path(tmp))
        names = list(load_manifest(args.bundle).conditions)
        sheets = [Image.open(Path(tmp) / f"{name}.png").convert("RGB") for name in names]
        height = min(args.height, *(sheet.height for sheet in sheets))
        out = Image.new("RGB", (sum(sheet.width for sheet in sheets), height), "white")
        left = 0
        for sheet in sheets:
            out.paste(sheet.crop((0, 0, sheet.width, height)), (left, 0))
            left += sheet.width
    out.save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
