"""Fixtures of the analysis tests: the fixture bundle (tests/conftest.py) as the analysis
reads it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def bundle(bundle_dir):
    from analysis.load import load_bundle

    return load_bundle(bundle_dir)
