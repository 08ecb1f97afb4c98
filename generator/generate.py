"""Generating dataset folders: sampling scenes, rendering in batches, interventions, shards.

The scene table of every split is sampled in full from the seed (cheap and
deterministic), so a shard (``shard=(i, n)``, 1-based) renders only its slice of rows
and yet holds exactly the scenes an unsharded run would; :func:`merge_shards` joins the
shard folders into the folder an unsharded run writes.

Random streams: one :class:`numpy.random.SeedSequence` per seed, spawned into one child
per split and per intervention factor, so adding ``--interventions`` or changing
``--n-val`` never changes the train scenes.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from generator.attributes import intervention_split, validate_frame
from generator.biases import BiasSpec
from generator.dataset import PAIRS_SPLIT, DatasetFolder, DatasetWriter
from xaistudy.errors import UserError
from xaistudy.files import Stopwatch
from xaistudy.vocabulary import FACTORS

SPLITS = ("train", "val", "test")
# Fixed slots of the seed's streams: one per split, then one per factor in FACTORS order,
# then the training pairs' (appended last, so older datasets keep their scenes).
_STREAM_SLOTS = (*SPLITS, *(f"intervene:{f}" for f in FACTORS), PAIRS_SPLIT)
# Scenes rendered at once: on a GPU per-batch overhead dominates below about 1,000 (an
# H200 rendered 11,900 images/s at 128 px in batches of 256, 25,400 in batches of 1,024
# and 28,600 of 4,096; 2,048 takes about 2.8 GB there); the CPU caps it at CPU_BATCH.
DEFAULT_BATCH_SIZE = 2048


def split_rngs(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per split / intervention factor, derived from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(len(_STREAM_SLOTS))
    pairs = zip(_STREAM_SLOTS, children, strict=True)
    return {slot: np.random.default_rng(child) for slot, child in pairs}


def scene_ids(split: str, n: int) -> list[str]:
    """Readable, unique ids: ``train-000000``, ..."""
    return [f"{split}-{i:06d}" for i in range(n)]


def intervene(
    params: pd.DataFrame, factor: str, spec: BiasSpec, rng: np.random.Generator
) -> pd.DataFrame:
    """The same scenes with only ``factor``'s attribute(s) redrawn independently of class.

    ``params`` needs ``id`` and the attributes; the result keeps every other column and
    the label, takes new ids ``<id>:<factor>``, ``original_id`` = the old id and
    ``intervened`` = ``factor``.
    """
    if factor not in FACTORS:
        raise UserError(f"unknown factor {factor!r}: allowed are {', '.join(FACTORS)}")
    if "id" not in params:
        raise ValueError("params need an 'id' column to intervene on")
    return _redrawn(params, FACTORS[factor], spec, rng, suffix=factor, intervened=factor)


def pair_scenes(
    params: pd.DataFrame, factors: Sequence[str], spec: BiasSpec, rng: np.random.Generator
) -> pd.DataFrame:
    """The same scenes with every one of ``factors`` redrawn at once, ids ``<id>:pair``.

    The factors must not carry the class (:func:`check_pair_factors`): then a pair's second
    scene is as likely under its label as the first, a training scene in its own right,
    and the two should get the same decision.
    """
    attributes = tuple(a for factor in factors for a in FACTORS[factor])
    return _redrawn(params, attributes, spec, rng, suffix="pair", intervened="+".join(factors))


def _redrawn(
    params: pd.DataFrame,
    attributes: tuple[str, ...],
    spec: BiasSpec,
    rng: np.random.Generator,
    suffix: str,
    intervened: str,
) -> pd.DataFrame:
    """``params`` with ``attributes`` redrawn independently of class, ids ``<id>:<suffix>``,
    ``original_id`` the old id and ``intervened`` as given."""
    redrawn = spec.sample_intervened(attributes, len(params), rng)
    result = params.copy().reset_index(drop=True)
    for name in attributes:
        result[name] = redrawn[name].to_numpy()
    result["original_id"] = result["id"].astype(str)
    result["id"] = [f"{i}:{suffix}" for i in result["original_id"]]
    result["intervened"] = intervened
    return result


def check_pair_factors(spec: BiasSpec, factors: Sequence[str]) -> tuple[str, ...]:
    """``factors`` as a tuple after refusing unknown ones and ones the spec ties to the class
    (redrawing a biased factor would teach the model to ignore the bias under study)."""
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        raise UserError(
            f"--train-pairs: unknown factor {', '.join(unknown)}; allowed are {', '.join(FACTORS)}"
        )
    biased = [f for f in factors if f not in free_factors(spec)]
    if biased:
        raise UserError(
            f"--train-pairs: {', '.join(biased)} depends on the class in bias spec "
            f"{spec.name!r}; pairs may only redraw factors that do not carry the class: "
            f"{', '.join(free_factors(spec))}"
        )
    if len(set(factors)) != len(factors):
        raise UserError("--train-pairs names a factor twice")
    return tuple(factors)


def free_factors(spec: BiasSpec) -> tuple[str, ...]:
    """The factors whose attributes ``spec`` draws alike for both classes."""
    return tuple(f for f in FACTORS if all(spec.independent_of_label(a) for a in FACTORS[f]))


def plan_splits(
    spec: BiasSpec,
    counts: dict[str, int],
    seed: int,
    interventions: bool,
    train_pairs: Sequence[str] = (),
) -> dict[str, pd.DataFrame]:
    """The scene table of every split: ``split -> params`` with ``id``, ``label``, attributes.
    With ``train_pairs`` (factors) also :data:`PAIRS_SPLIT`, the training scenes with those
    factors redrawn, row for row."""
    rngs = split_rngs(seed)
    plan: dict[str, pd.DataFrame] = {}
    for split in SPLITS:
        params = spec.sample(counts[split], rngs[split])
        params.insert(0, "id", scene_ids(split, len(params)))
        params["original_id"] = None
        params["intervened"] = None
        plan[split] = params
    if interventions:
        for factor in FACTORS:
            plan[intervention_split(factor)] = intervene(
                plan["test"], factor, spec, rngs[f"intervene:{factor}"]
            )
    if train_pairs:
        plan[PAIRS_SPLIT] = pair_scenes(plan["train"], train_pairs, spec, rngs[PAIRS_SPLIT])
    return plan


def shard_rows(n: int, shard: tuple[int, int] | None) -> slice:
    """Rows of ``n`` that shard ``(i, count)`` (1-based) renders: contiguous and balanced."""
    if shard is None:
        return slice(0, n)
    index, count = shard
    return slice((index - 1) * n // count, index * n // count)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/4"`` -> ``(2, 4)``; ``None`` -> ``None``."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} must look like i/N, e.g. 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise UserError(f"--shard {text}: need 1 <= i <= N, N >= 1")
    return index, count


def render_into(
    params: pd.DataFrame,
    images: np.ndarray,
    masks: np.ndarray,
    size: int,
    device,
    batch_size: int,
    antialias: bool,
    progress: tqdm | None,
    workers: int | None = None,
) -> None:
    """Render ``params`` into ``images`` (N,S,S,3) and ``masks`` (N,S,S).

    With the memory-mapped arrays of :meth:`DatasetWriter.open_split` the renderer's worker
    processes write their rows straight into the files: they start once per split and
    no pixels pass through this process.
    """
    from generator.render import render_scenes

    render_scenes(
        params,
        size=size,
        device=device,
        batch_size=batch_size,
        antialias=antialias,
        workers=workers,
        out=(images, masks),
        on_rendered=None if progress is None else progress.update,
    )


def generate_dataset(
    spec: BiasSpec,
    out: Path,
    *,
    n_train: int = 10_000,
    n_val: int = 1_000,
    n_test: int = 1_000,
    size: int = 128,
    seed: int = 0,
    interventions: bool = False,
    train_pairs: Sequence[str] = (),
    device=None,
    png: bool = False,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    antialias: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    workers: int | None = None,
    stopwatch: Stopwatch | None = None,
) -> Path:
    """Write a dataset folder (docs/dataset.md) and return its path.

    ``device`` is a ``torch.device`` (or None for the renderer's default). With
    ``shard=(i, N)`` only the i-th of N slices of every split is rendered and
    ``meta.json`` records ``shard``; :func:`merge_shards` joins them. ``workers``: the
    renderer's processes (:func:`generator.parallel.worker_count`; None: one per core). A
    ``stopwatch`` times the stages (bench/bench_generator.py sets one). ``train_pairs``:
    factors redrawn in :data:`PAIRS_SPLIT` (docs/dataset.md, "Training pairs").
    """
    watch = stopwatch or Stopwatch()
    counts = split_counts(n_train, n_val, n_test, size)
    train_pairs = check_pair_factors(spec, train_pairs)
    with watch("sample scenes"):
        plan = plan_splits(spec, counts, seed, interventions, train_pairs)
        selected = {name: frame.iloc[shard_rows(len(frame), shard)] for name, frame in plan.items()}
        for frame in selected.values():
            validate_frame(frame)

    writer = DatasetWriter(out, overwrite=overwrite)
    try:
        render_splits(
            writer, selected, size, device, batch_size, antialias, png, progress, workers, watch
        )
        meta = {
            "preset": spec.preset,
            "spec": spec.to_dict(),
            "seed": seed,
            "size": size,
            "interventions": list(FACTORS) if interventions else [],
            "train_pairs": list(train_pairs),
            "antialias": antialias,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "counts": {name: len(frame) for name, frame in plan.items()},
        }
        if shard is not None:
            meta["shard"] = list(shard)
        with watch("publish"):
            return writer.finish(meta)
    except BaseException:
        writer.abort()
        raise


def split_counts(n_train: int, n_val: int, n_test: int, size: int) -> dict[str, int]:
    """``split -> scenes`` after refusing negative counts and images under 8 pixels."""
    counts = {"train": n_train, "val": n_val, "test": n_test}
    for split, n in counts.items():
        if n < 0:
            raise UserError(f"--n-{split} must be >= 0, got {n}")
    if size < 8:
        raise UserError(f"--size must be at least 8 pixels, got {size}")
    return counts


def dataset_is_current(
    folder: Path,
    preset: str,
    *,
    seed: int,
    size: int,
    counts: Mapping[str, int],
    interventions: bool,
    train_pairs: Sequence[str] = (),
) -> bool:
    """Whether ``folder`` is a complete, unsharded dataset folder of the bias preset
    ``preset`` that :func:`generate_dataset` would write with these arguments
    (``counts``: split -> number of scenes, e.g. ``{"train": 100, "val": 10, "test": 10}``)."""
    try:
        meta = DatasetFolder(folder).meta
    except UserError:
        return False
    written = meta.get("splits", {})
    return (
        "shard" not in meta
        and meta.get("preset") == preset
        and meta.get("seed") == seed
        and meta.get("size") == size
        and all(written.get(split) == n for split, n in counts.items())
        and meta.get("interventions") == (list(FACTORS) if interventions else [])
        and meta.get("train_pairs", []) == list(train_pairs)
    )


def render_splits(
    writer: DatasetWriter,
    splits: dict[str, pd.DataFrame],
    size: int,
    device,
    batch_size: int = DEFAULT_BATCH_SIZE,
    antialias: bool = True,
    png: bool = False,
    progress: bool = True,
    workers: int | None = None,
    stopwatch: Stopwatch | None = None,
) -> None:
    """Render every split's scenes into ``writer``'s memory-mapped arrays, with one bar.
    A ``stopwatch`` times the stages."""
    watch = stopwatch or Stopwatch()
    total = sum(len(frame) for frame in splits.values())
    with tqdm(total=total, desc="rendering", unit="img", disable=not progress) as bar:
        for name, frame in splits.items():
            with watch("open arrays"):
                images, masks = writer.open_split(name, len(frame), size)
            with watch("render"):
                render_into(frame, images, masks, size, device, batch_size, antialias, bar, workers)
            with watch("flush arrays"):
                images.flush()
                masks.flush()
            with watch("write params"):
                writer.finish_split(name, frame.reset_index(drop=True))
            if png:
                with watch("write pngs"):
                    write_pngs(writer.split_dir(name), frame, images, masks)
            del images, masks  # close the memory maps before the folder is renamed


def write_pngs(split_dir: Path, params: pd.DataFrame, images: np.ndarray, masks: np.ndarray):
    """Browsable copies: ``png/<id>.png`` and ``png/<id>_mask.png`` (block ids 0..8)."""
    from PIL import Image

    folder = split_dir / "png"
    folder.mkdir(exist_ok=True)
    for scene_id, image, mask in zip(params["id"], images, masks, strict=True):
        name = str(scene_id).replace(":", "_")
        Image.fromarray(np.asarray(image)).save(folder / f"{name}.png")
        Image.fromarray(np.asarray(mask)).save(folder / f"{name}_mask.png")


# --- merging shards ---------------------------------------------------------------------

_SHARED_META = (
    "spec",
    "seed",
    "size",
    "interventions",
    "train_pairs",
    "antialias",
    "counts",
    "preset",
)


def merge_shards(shard_dirs: Sequence[Path], out: Path, overwrite: bool = False) -> Path:
    """Join complete shard folders into one folder identical to an unsharded run."""
    if not shard_dirs:
        raise UserError("merge needs at least one shard folder")
    folders = [DatasetFolder(Path(d)) for d in shard_dirs]
    first = folders[0].meta
    for folder in folders:
        if "shard" not in folder.meta:
            raise UserError(f"{folder.root} is not a shard (its meta.json has no 'shard')")
        for key in _SHARED_META:
            if folder.meta.get(key) != first.get(key):
                raise UserError(
                    f"{folder.root} differs from {folders[0].root} in {key!r}: shards to merge "
                    "must come from the same seed, spec, size and counts"
                )
    count = first["shard"][1]
    indices = sorted(f.meta["shard"][0] for f in folders)
    if any(f.meta["shard"][1] != count for f in folders) or indices != list(range(1, count + 1)):
        raise UserError(
            f"shards must cover 1..{count} exactly once; got {', '.join(map(str, indices))} "
            f"of {', '.join(sorted({str(f.meta['shard'][1]) for f in folders}))}"
        )
    folders.sort(key=lambda f: f.meta["shard"][0])
    writer = DatasetWriter(out, overwrite=overwrite)
    try:
        size = int(first["size"])
        for name, n in first["counts"].items():
            params = [f.split(name).params for f in folders]
            merged = pd.concat(params, ignore_index=True)
            if len(merged) != n:
                raise UserError(f"split {name}: shards hold {len(merged)} rows, expected {n}")
            images, masks = writer.open_split(name, n, size)
            start = 0
            for folder in folders:
                part = folder.split(name)
                images[start : start + len(part)] = part.images
                masks[start : start + len(part)] = part.masks
                if (folder.root / name / "png").is_dir():
                    shutil.copytree(
                        folder.root / name / "png",
                        writer.split_dir(name) / "png",
                        dirs_exist_ok=True,
                    )
                start += len(part)
            images.flush()
            masks.flush()
            writer.finish_split(name, merged)
            del images, masks
        meta = {k: v for k, v in first.items() if k not in ("shard", "splits")}
        meta.pop("format_version", None)
        meta.pop("generator_version", None)
        return writer.finish(meta)
    except BaseException:
        writer.abort()
        raise
