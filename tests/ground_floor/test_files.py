"""The ground floor's file helpers: outputs appear whole or not at all."""

from __future__ import annotations

import json
import os

import pytest

from xaistudy import files
from xaistudy.files import (
    Stopwatch,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    json_text,
    publish_folder,
    staged_folder,
)


class Interrupted(Exception):
    pass


def test_atomic_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")
    assert atomic_write_text(path, "new, ü") == path
    assert path.read_text(encoding="utf-8") == "new, ü"
    assert atomic_write_bytes(path, b"\x00\x01") == path and path.read_bytes() == b"\x00\x01"
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_failed_rename_leaves_the_old_file_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "card.json"
    path.write_text("old")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write_json(path, {"new": 1})
    assert path.read_text() == "old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_writer_that_fails_half_way_leaves_the_old_file_and_no_partial_file(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"old")
    with pytest.raises(Interrupted), atomic_path(path) as tmp:
        tmp.write_bytes(b"half of the ne")
        raise Interrupted
    assert path.read_bytes() == b"old"
    assert sorted(tmp_path.iterdir()) == [path]


def test_temporary_names_are_hidden_siblings_unique_to_the_process(tmp_path):
    tmp = files.temporary_name(tmp_path / "out")
    assert tmp.parent == tmp_path and tmp.name.startswith(".out.")
    assert str(os.getpid()) in tmp.name


def test_json_text_is_sorted_indented_and_ends_in_a_newline(tmp_path):
    text = json_text({"b": 1, "a": [1, 2]})
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"')
    path = atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}


def test_staged_folder_publishes_a_complete_folder_over_the_old_one(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "stale.png").write_text("old")
    with staged_folder(out) as staging:
        assert staging.is_dir() and staging != out
        (staging / "manifest.json").write_text("{}")
        assert (out / "stale.png").exists()  # the old folder stays until the end
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert sorted(tmp_path.iterdir()) == [out]


def test_a_failure_inside_staged_folder_leaves_the_old_folder_and_no_temporary_one(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    for failure in (Interrupted, KeyboardInterrupt):
        with pytest.raises(failure), staged_folder(out) as staging:
            (staging / "manifest.json").write_text("half")
            raise failure
        assert (out / "manifest.json").read_text() == "old"
        assert sorted(tmp_path.iterdir()) == [out]


def test_staged_folder_creates_missing_parents(tmp_path):
    out = tmp_path / "a" / "b" / "report"
    with staged_folder(out) as staging:
        (staging / "report.html").write_text("<p>")
    assert (out / "report.html").read_text() == "<p>"


def test_publish_folder_replaces_a_file_in_the_way(tmp_path):
    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    (staging / "x").write_text("x")
    out.write_text("a file")
    assert publish_folder(staging, out) == out
    assert (out / "x").read_text() == "x" and not staging.exists()


def test_stopwatch_adds_up_a_phase_timed_twice_and_times_a_failing_phase(monkeypatch):
    clock = iter([0.0, 1.0, 10.0, 12.5, 20.0, 20.25])
    monkeypatch.setattr(files.time, "perf_counter", lambda: next(clock))
    watch = Stopwatch()
    with watch("load"):
        pass
    with watch("load"):
        pass
    with pytest.raises(Interrupted), watch("write"):
        raise Interrupted
    assert watch.seconds == {"load": 3.5, "write": 0.25}
    assert watch.total == 3.75
