"""Fixtures every test folder shares: the fixture study bundle, written once per session.

The bundle is ``tests/fixtures/make_bundle.py``'s: random 64 px images in all three
conditions, ground truth with two relevant attributes. Tests that damage or edit a
bundle copy it first; the session's copy is only read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

MAKE_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "make_bundle.py"


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """The fixture bundle's folder (each xdist worker writes its own once)."""
    spec = importlib.util.spec_from_file_location("xaistudy_fixture_bundle", MAKE_BUNDLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_fixture_bundle(tmp_path_factory.mktemp("bundle") / "bundle")
