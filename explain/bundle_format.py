"""The study bundle on disk: ``manifest.json`` plus content-hashed images.

This module is the one contract between ``xaistudy explain`` (which writes bundles)
and the study server and the analysis (which only read them). It imports no torch.

``manifest.json`` (schema version 1; docs/bundle.md has the full description)::

    {
      "schema_version": 1,
      "created": "2026-11-22T10:00:00+00:00",
      "files": {"images/<sha256[:16]>.png": "<sha256 hex>", ...},  # every file but the manifest
      "model_card": {...},            # from the run folder
      "dataset": {"fingerprint": ..., "preset": ..., "size": ...},
      "ground_truth": {factor: {"effect": float, "ci": [low, high], "flip_rate": float,
                                "variance_share": float, "relevant": bool}, ...},
      "ground_truth_rule": {"description": str, ...the thresholds...},
      "attributes": [{"key": "arm_position", "name": "arm position",
                      "factors": ["arm_position"], "relevant": bool}, ...],
      "tutorial": {
        "examples": {"peaky": [Stimulus, ...], "stretchy": [Stimulus, ...]},
        "attributes": {attribute key: {"caption": str, "images": [Stimulus, ...]}, ...}
      },
      "conditions": {
        "baseline" | "counterfactuals" | "concepts": {
          "title": str, "description": str,
          "layout": {"rows": int, "columns": int,
                     "row_labels": [str] * rows, "column_labels": [str] * columns, ...},
          "stimuli": [Stimulus with "row" and "column", ...],   # row-major order
          ...condition-specific details (binning, targets, concepts, fidelity)
        }
      },
      "validation": {                 # optional (explain.validation; docs/bundle.md)
        "counterfactuals": {"n", "clipped_fraction_mean", "clipped_fraction_max",
                            "stored_logit_error_max", "wrong_side",
                            "manifest_logit_mismatch_max", "cells": [...],
                            "attribute_trends": {attribute key: {"reading", "slope",
                                                 "r2", "range_share", "relevant"}}},
        "concepts": {"rows": [{"row", "index", "about", "about_correlation",
                               "correlations", "mass": {"arms", "blocks", "background"}}],
                     "pairs": [{"rows", "image_score_correlation",
                                "score_map_correlation", "similarity"}]},
        "ground_truth": {"relevant", "irrelevant", "all_relies_on", "all_does_not",
                         "all_neutral", "weakest_relevant", "strongest_irrelevant",
                         "effect_ratio"},
        "probe": {"architecture", "fingerprint", "train_images", "seconds", "test_r2"},
        "thresholds": {...}, "failures": [str], "passed": bool,
        "published_despite_failures": bool
      }
    }

A Stimulus is ``{"image": "images/<hash>.png", "caption": str, ...}``; stimuli of a
condition also carry ``row`` and ``column`` (0-based) and may carry ``logit`` and
``decision``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xaistudy.errors import UserError
from xaistudy.files import json_text, publish_folder, temporary_name

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
IMAGE_DIR = "images"
REQUIRED_KEYS = (
    "schema_version",
    "files",
    "model_card",
    "ground_truth",
    "attributes",
    "tutorial",
    "conditions",
)
GROUND_TRUTH_KEYS = ("effect", "ci", "flip_rate", "relevant")


class BundleError(UserError):
    """A bundle that is missing, damaged or not of this schema."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class BundleWriter:
    """Writes a bundle into a temporary folder beside ``OUT``, published when complete.

    Images are stored under content-hashed names (``images/<sha256[:16]>.<ext>``), so
    identical images are stored once and a browser may cache them forever.
    """

    def __init__(self, out: Path, overwrite: bool = False):
        self.out = Path(out)
        occupied = self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir()))
        if occupied and not overwrite:
            raise UserError(
                f"output folder {self.out} exists and is not empty; pass --overwrite to replace it"
            )
        self.tmp = temporary_name(self.out)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        (self.tmp / IMAGE_DIR).mkdir(parents=True)
        self.files: dict[str, str] = {}

    def add_image_bytes(self, data: bytes, ext: str = "png") -> str:
        """Store encoded image bytes; return the bundle-relative path."""
        digest = sha256_bytes(data)
        rel = f"{IMAGE_DIR}/{digest[:16]}.{ext}"
        if rel not in self.files:
            (self.tmp / rel).write_bytes(data)
            self.files[rel] = digest
        return rel

    def add_file(self, rel: str, data: bytes) -> str:
        """Store any other file (e.g. a JSON table) at ``rel`` inside the bundle."""
        path = self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = sha256_bytes(data)
        return rel

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Validate ``manifest``, add ``files`` and ``schema_version``, publish the bundle."""
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **manifest,
            "files": dict(sorted(self.files.items())),
        }
        validate_manifest(manifest)
        missing = [rel for rel in referenced_files(manifest) if rel not in self.files]
        if missing:
            raise ValueError(f"manifest names files never written: {missing[:5]}")
        (self.tmp / MANIFEST).write_text(json_text(manifest))
        return publish_folder(self.tmp, self.out)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise BundleError(f"invalid bundle manifest: {message}")


def _check_stimulus(where: str, stimulus: Any) -> None:
    _require(isinstance(stimulus, dict), f"{where} is not an object")
    _require(isinstance(stimulus.get("image"), str), f"{where} has no image path")
    _require(isinstance(stimulus.get("caption", ""), str), f"{where} caption is not text")


def validate_manifest(manifest: Any) -> None:
    """Check the manifest's structure against schema version 1."""
    _require(isinstance(manifest, dict), "the manifest is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    _require(not missing, f"missing key(s) {', '.join(missing)}")
    _require(
        manifest["schema_version"] == SCHEMA_VERSION,
        f"schema_version {manifest['schema_version']!r}; this version reads {SCHEMA_VERSION}",
    )
    _require(isinstance(manifest["files"], dict), "files is not an object")

    truth = manifest["ground_truth"]
    _require(isinstance(truth, dict) and truth, "ground_truth is empty")
    for factor, entry in truth.items():
        lacking = [k for k in GROUND_TRUTH_KEYS if k not in entry]
        _require(not lacking, f"ground_truth[{factor!r}] lacks {', '.join(lacking)}")
        _require(isinstance(entry["relevant"], bool), f"ground_truth[{factor!r}].relevant")

    attributes = manifest["attributes"]
    _require(isinstance(attributes, list) and attributes, "attributes is empty")
    for attr in attributes:
        _require(
            isinstance(attr, dict) and {"key", "name", "factors", "relevant"} <= set(attr),
            f"attribute entry {attr!r} needs key, name, factors, relevant",
        )
        unknown = [f for f in attr["factors"] if f not in truth]
        _require(not unknown, f"attribute {attr['key']!r} names unknown factor(s) {unknown}")

    tutorial = manifest["tutorial"]
    _require(isinstance(tutorial, dict), "tutorial is not an object")
    for label in ("peaky", "stretchy"):
        examples = tutorial.get("examples", {}).get(label)
        _require(isinstance(examples, list) and examples, f"tutorial has no {label} examples")
        for i, stim in enumerate(examples):
            _check_stimulus(f"tutorial.examples.{label}[{i}]", stim)
    for key, row in tutorial.get("attributes", {}).items():
        _require(isinstance(row.get("images"), list), f"tutorial.attributes.{key} has no images")
        for i, stim in enumerate(row["images"]):
            _check_stimulus(f"tutorial.attributes.{key}[{i}]", stim)

    conditions = manifest["conditions"]
    _require(isinstance(conditions, dict) and conditions, "conditions is empty")
    for name, condition in conditions.items():
        layout = condition.get("layout")
        _require(isinstance(layout, dict), f"condition {name!r} has no layout")
        rows, columns = layout.get("rows"), layout.get("columns")
        _require(
            isinstance(rows, int) and isinstance(columns, int) and rows > 0 and columns > 0,
            f"condition {name!r} layout needs positive rows and columns",
        )
        stimuli = condition.get("stimuli")
        _require(isinstance(stimuli, list) and stimuli, f"condition {name!r} has no stimuli")
        for i, stim in enumerate(stimuli):
            where = f"conditions.{name}.stimuli[{i}]"
            _check_stimulus(where, stim)
            _require(
                0 <= stim.get("row", -1) < rows and 0 <= stim.get("column", -1) < columns,
                f"{where} row/column outside the {rows} x {columns} layout",
            )


def referenced_files(manifest: dict[str, Any]) -> list[str]:
    """Every image path the manifest's stimuli point at."""
    paths: list[str] = []
    tutorial = manifest.get("tutorial", {})
    for examples in tutorial.get("examples", {}).values():
        paths += [s["image"] for s in examples]
    for row in tutorial.get("attributes", {}).values():
        paths += [s["image"] for s in row.get("images", [])]
    for condition in manifest.get("conditions", {}).values():
        paths += [s["image"] for s in condition.get("stimuli", [])]
    return paths


def load_manifest(bundle_dir: Path) -> dict[str, Any]:
    """Read and structurally validate ``manifest.json`` (no hashing)."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    if not path.exists():
        raise BundleError(
            f"{bundle_dir} is not a study bundle: it has no {MANIFEST} (made by 'xaistudy explain')"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    validate_manifest(manifest)
    return manifest


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """Check the schema and the hash of every file; return the manifest.

    Raises :class:`BundleError` naming the first problem: a missing file, a file whose
    content changed, an image a stimulus names that the manifest does not list.
    """
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    root = bundle_dir.resolve()
    for rel, expected in manifest["files"].items():
        path = (bundle_dir / rel).resolve()
        if root not in path.parents:
            raise BundleError(f"damaged bundle: file path {rel!r} points outside the bundle")
        if not path.is_file():
            raise BundleError(f"damaged bundle: {rel} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"damaged bundle: {rel} has hash {actual[:12]}..., the manifest says "
                f"{expected[:12]}..."
            )
    unlisted = sorted({p for p in referenced_files(manifest) if p not in manifest["files"]})
    if unlisted:
        raise BundleError(f"damaged bundle: stimuli name unlisted file(s) {unlisted[:3]}")
    return manifest
