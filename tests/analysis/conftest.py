"""Fixtures of the analysis tests: one tiny study bundle per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    from make_bundle import make_fixture_bundle

    return make_fixture_bundle(tmp_path_factory.mktemp("analysis-bundle") / "bundle")


@pytest.fixture(scope="session")
def bundle(bundle_dir):
    from analysis.load import load_bundle

    return load_bundle(bundle_dir)
