"""The dataset folder: writing it safely, reading it memory-mapped.

Layout (docs/dataset.md)::

    DIR/meta.json                 written last: a folder without it is incomplete
    DIR/<split>/params.parquet    one row per image: id, label, every attribute,
                                  original_id and intervened (intervention rows)
    DIR/<split>/images.npy        N x H x W x 3 uint8
    DIR/<split>/masks.npy         N x H x W uint8, block ids 0..8

A :class:`DatasetWriter` writes into a temporary folder beside ``DIR`` and publishes it
as ``DIR`` only in :meth:`DatasetWriter.finish`, so an interrupted run never leaves a
folder that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.utils.data

from generator.attributes import ATTRIBUTES
from xaistudy import __version__
from xaistudy.errors import UserError
from xaistudy.files import json_text, publish_folder, temporary_name

FORMAT_VERSION = 1
META_FILE = "meta.json"
# The training scenes again, row for row, with the factors that do not carry the class
# redrawn (`xaistudy generate --train-pairs`; modeling.configs.ModelConfig.invariance_weight).
PAIRS_SPLIT = "train_pairs"
PARAM_COLUMNS = ("id", "label", *ATTRIBUTES, "original_id", "intervened")


def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty ``out`` unless ``overwrite``; then clear it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(
                f"output folder {out} exists and is not empty; pass --overwrite to replace it"
            )
        shutil.rmtree(out)


class DatasetWriter:
    """Collects splits in a temporary folder and publishes them atomically.

    Example::

        writer = DatasetWriter(out, overwrite=False)
        writer.write_split("train", params, images, masks)
        writer.finish(meta)   # meta.json written last, then renamed to ``out``
    """

    def __init__(self, out: Path, overwrite: bool = False):
        self.out = Path(out)
        prepare_output_dir(self.out, overwrite)
        self.tmp = temporary_name(self.out)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.counts: dict[str, int] = {}

    def split_dir(self, split: str) -> Path:
        path = self.tmp / split
        path.mkdir(exist_ok=True)
        return path

    def write_split(
        self, split: str, params: pd.DataFrame, images: np.ndarray, masks: np.ndarray
    ) -> None:
        """Write one whole split. ``images`` N x H x W x 3 uint8, ``masks`` N x H x W uint8."""
        check_split_arrays(split, params, images, masks)
        path = self.split_dir(split)
        write_params(path / "params.parquet", params)
        np.save(path / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
        np.save(path / "masks.npy", np.ascontiguousarray(masks, dtype=np.uint8))
        self.counts[split] = len(params)

    def open_split(self, split: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Open memory-mapped ``images.npy``/``masks.npy`` to fill batch by batch."""
        path = self.split_dir(split)
        images = np.lib.format.open_memmap(
            path / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
        )
        masks = np.lib.format.open_memmap(
            path / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, size, size)
        )
        return images, masks

    def finish_split(self, split: str, params: pd.DataFrame) -> None:
        """Write ``params.parquet`` for a split filled through :meth:`open_split`."""
        write_params(self.split_dir(split) / "params.parquet", params)
        self.counts[split] = len(params)

    def finish(self, meta: dict[str, Any]) -> Path:
        """Write ``meta.json`` last and move the folder into place."""
        meta = {
            "format_version": FORMAT_VERSION,
            "generator_version": __version__,
            **meta,
            "splits": dict(self.counts),
        }
        (self.tmp / META_FILE).write_text(json_text(meta))
        return publish_folder(self.tmp, self.out)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_split_arrays(split, params, images, masks) -> None:
    n = len(params)
    if images.ndim != 4 or images.shape[0] != n or images.shape[-1] != 3:
        raise ValueError(f"{split}: images must be {n} x H x W x 3, got {images.shape}")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"{split}: masks must be {images.shape[:3]}, got {masks.shape}")


def write_params(path: Path, params: pd.DataFrame) -> None:
    frame = params.copy()
    for column in ("original_id", "intervened"):
        if column not in frame:
            frame[column] = None
    missing = [c for c in PARAM_COLUMNS if c not in frame]
    if missing:
        raise ValueError(f"params lack column(s) {missing}")
    frame["original_id"] = frame["original_id"].astype("string")
    frame["intervened"] = frame["intervened"].astype("string")
    frame = frame[list(PARAM_COLUMNS) + [c for c in frame.columns if c not in PARAM_COLUMNS]]
    frame.to_parquet(path, index=False)


@dataclass
class Split:
    """One split of a dataset folder; arrays are memory-mapped, not loaded."""

    name: str
    params: pd.DataFrame
    images: np.ndarray  # N x H x W x 3 uint8 (memmap)
    masks: np.ndarray  # N x H x W uint8 (memmap)

    def __len__(self) -> int:
        return len(self.params)


class DatasetFolder:
    """A complete dataset folder (one with ``meta.json``)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"dataset folder {self.root} does not exist")
        meta_path = self.root / META_FILE
        if not meta_path.exists():
            raise UserError(
                f"{self.root} is not a complete dataset folder: it has no {META_FILE} "
                "(made by 'xaistudy generate' or 'xaistudy render')"
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{meta_path} is not valid JSON: {exc}") from exc

    @property
    def splits(self) -> list[str]:
        return list(self.meta.get("splits", {}))

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    def has_split(self, name: str) -> bool:
        return name in self.meta.get("splits", {})

    def split(self, name: str) -> Split:
        if not self.has_split(name):
            raise UserError(
                f"dataset {self.root} has no split {name!r}; it has {', '.join(self.splits)}"
            )
        path = self.root / name
        params = pd.read_parquet(path / "params.parquet")
        images = np.load(path / "images.npy", mmap_mode="r")
        masks = np.load(path / "masks.npy", mmap_mode="r")
        return Split(name, params, images, masks)

    def fingerprint(self) -> str:
        """A short hash of ``meta.json`` and every split's scene parameters."""
        digest = hashlib.sha256((self.root / META_FILE).read_bytes())
        for name in sorted(self.splits):
            digest.update((self.root / name / "params.parquet").read_bytes())
        return digest.hexdigest()[:16]


class ImageDataset(torch.utils.data.Dataset):
    """``torch.utils.data.Dataset`` over one split: ``(image, label)`` pairs.

    ``image`` is a float32 tensor 3 x H x W in [0, 1]; ``label`` an int64 (0 peaky,
    1 stretchy). Images are read from the memory-mapped ``images.npy``: no decoding.
    """

    def __init__(self, folder: DatasetFolder | Path, split: str):
        folder = folder if isinstance(folder, DatasetFolder) else DatasetFolder(folder)
        data = folder.split(split)
        self.images = data.images
        self.labels = data.params["label"].to_numpy(dtype=np.int64)
        self.params = data.params

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = torch.from_numpy(np.array(self.images[index]))
        image = image.permute(2, 0, 1).float().div_(255.0)
        return image, torch.tensor(self.labels[index])
