"""Fixtures of the modeling tests: a tiny dataset folder and a tiny TOML config."""

from __future__ import annotations

from pathlib import Path

import pytest
from modeling_helpers import TINY_TOML, write_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "pattern16")


@pytest.fixture
def tiny_toml(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path
