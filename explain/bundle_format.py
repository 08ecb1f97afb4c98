"""The study bundle on disk: ``manifest.json`` plus content-hashed images.

This module and :mod:`explain.manifest` (the manifest's typed records) are the one
contract between ``xaistudy explain`` (which writes bundles) and the study server and
the analysis (which only read them). They import no torch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from explain.manifest import SCHEMA_VERSION, BundleError, Manifest
from xaistudy.errors import UserError
from xaistudy.files import json_text, publish_folder, temporary_name

MANIFEST = "manifest.json"
IMAGE_DIR = "images"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_name(data: bytes, ext: str = "png") -> tuple[str, str]:
    """An image's bundle-relative path (named by its content) and its sha256."""
    digest = sha256_bytes(data)
    return f"{IMAGE_DIR}/{digest[:16]}.{ext}", digest


class ImageCollector:
    """Encoded images kept in memory under the paths :class:`BundleWriter` gives them.

    For work done away from the bundle folder (a task on another host): it hands back
    ``images`` (path -> bytes) and the driver stores each with
    :meth:`BundleWriter.add_image_bytes`, which gives the same path.
    """

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}

    def add_image_bytes(self, data: bytes, ext: str = "png") -> str:
        rel, _ = image_name(data, ext)
        self.images[rel] = data
        return rel


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
        rel, digest = image_name(data, ext)
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

    def finish(self, manifest: Manifest) -> Path:
        """Stamp ``manifest`` with ``files``, ``created`` and ``schema_version``, check it
        as a reader would, and publish the bundle."""
        manifest = replace(
            manifest,
            schema_version=SCHEMA_VERSION,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            files=dict(sorted(self.files.items())),
        )
        data = manifest.to_json()
        Manifest.from_json(data)
        missing = [rel for rel in manifest.images() if rel not in self.files]
        if missing:
            raise ValueError(f"manifest names files never written: {missing[:5]}")
        (self.tmp / MANIFEST).write_text(json_text(data))
        return publish_folder(self.tmp, self.out)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def load_manifest(bundle_dir: Path) -> Manifest:
    """Read and check ``manifest.json`` (no hashing)."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    if not path.exists():
        raise BundleError(
            f"{bundle_dir} is not a study bundle: it has no {MANIFEST} (made by 'xaistudy explain')"
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:  # a folder, unreadable, not UTF-8
        raise BundleError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: bad JSON, or an integer of thousands of digits; RecursionError:
        # arrays nested thousands deep.
        raise BundleError(f"{path} is not valid JSON: {str(exc)[:200]}") from exc
    return Manifest.from_json(data)


def _listed_file_hash(bundle_dir: Path, root: Path, rel: str) -> str:
    path = (bundle_dir / rel).resolve()
    if root not in path.parents:
        raise BundleError(f"damaged bundle: file path {rel!r} points outside the bundle")
    if not path.is_file():
        raise BundleError(f"damaged bundle: {rel} is listed in the manifest but missing")
    return sha256_file(path)


def verify_bundle(bundle_dir: Path) -> Manifest:
    """Check the schema and the hash of every file; return the manifest.

    Raises :class:`BundleError` naming the first problem: a missing file, a file whose
    content changed, an image a stimulus names that the manifest does not list.
    """
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    root = bundle_dir.resolve()
    for rel, expected in manifest.files.items():
        try:
            actual = _listed_file_hash(bundle_dir, root, rel)
        except (OSError, ValueError, RuntimeError) as exc:
            # A NUL byte or an over-long name (ValueError, OSError), a symlink loop
            # (RuntimeError): no file a bundle could hold.
            raise BundleError(
                f"damaged bundle: file path {rel[:200]!r} cannot be read: {exc}"
            ) from exc
        if actual != expected:
            raise BundleError(
                f"damaged bundle: {rel} has hash {actual[:12]}..., the manifest says "
                f"{expected[:12]}..."
            )
    unlisted = sorted({p for p in manifest.images() if p not in manifest.files})
    if unlisted:
        raise BundleError(f"damaged bundle: stimuli name unlisted file(s) {unlisted[:3]}")
    _check_pair_pictures(bundle_dir, manifest)
    return manifest


def _check_pair_pictures(bundle_dir: Path, manifest: Manifest) -> None:
    """Every counterfactual-simulation picture decodes as an RGB image of the dataset's
    size: participants compare the two pictures of a pair side by side."""
    from PIL import Image

    section = manifest.counterfactual_simulation
    size = (manifest.dataset.size, manifest.dataset.size)
    for rel in section.images() if section is not None else ():
        try:
            with Image.open(bundle_dir / rel) as image:
                image.load()
                shape = (image.size, image.mode)
        except (OSError, ValueError) as exc:
            raise BundleError(f"damaged bundle: {rel} does not decode as an image: {exc}") from exc
        if shape != (size, "RGB"):
            raise BundleError(
                f"damaged bundle: counterfactual-simulation picture {rel} is a "
                f"{shape[0][0]} x {shape[0][1]} {shape[1]} image; the dataset's are "
                f"{size[0]} x {size[1]} RGB"
            )
