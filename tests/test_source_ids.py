"""Source ids: the contract's pattern checked whole, ids from any file name, distinct ids in one job."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.source_ids import (
    distinct_source_ids,
    is_valid_source_id,
    output_folder,
    source_id_for,
)


@pytest.mark.parametrize("source_id", ["cam\n", ".", "..", "", "a" * 65, "a/b", "cam 1", "面接"])
def test_ids_outside_the_contract_or_naming_special_folders_are_invalid(source_id: str) -> None:
    assert not is_valid_source_id(source_id)
    with pytest.raises(ConfigError, match="invalid source id"):
        output_folder("out", source_id)


@pytest.mark.parametrize("source_id", ["cam1", "lobby.east", "a-b_c", "...", "a" * 64])
def test_contract_ids_are_valid_and_stay_inside_the_output_folder(source_id: str, tmp_path: Path) -> None:
    assert is_valid_source_id(source_id)
    folder = output_folder(tmp_path, source_id)
    assert folder.resolve().parent == tmp_path.resolve()


def test_names_that_are_ids_keep_them() -> None:
    assert source_id_for("/x/interview-03.mp4") == "interview-03"
    assert source_id_for("lobby.cam.mkv") == "lobby.cam"


@pytest.mark.parametrize(
    "names",
    [
        ["面接.mp4", "会議.mp4", "インタビュー.mp4"],
        ["Interview 03 (final).mov", "Interview_03_(final).mov", "Interview 03 final.mov"],
        ["Café.mp4", "Cafe_.mp4", "Café!.mp4"],
        ["x" * 70 + "1.mp4", "x" * 70 + "2.mp4"],
        ["...mp4", "..mp4", "_.mp4"],
    ],
)
def test_different_names_give_different_valid_ids(names: list[str]) -> None:
    ids = [source_id_for(name) for name in names]
    assert all(is_valid_source_id(source_id) for source_id in ids), ids
    assert len(set(ids)) == len(names), ids
    assert ids == [source_id_for(name) for name in names], "ids must be stable"


def test_accents_are_transliterated_and_the_rest_kept_readable() -> None:
    assert source_id_for("Café interview.mp4").startswith("Cafe_interview-")
    assert source_id_for("Interview 03 (final).mov").startswith("Interview_03_final-")


def test_one_job_tells_apart_suffixes_and_folders(tmp_path: Path) -> None:
    paths = [Path("a.mp4"), Path("a.mkv"), tmp_path / "x" / "b.mp4", tmp_path / "y" / "b.mp4", Path("c.mp4")]
    ids = distinct_source_ids(paths)
    assert ids[:2] == ["a.mp4", "a.mkv"]
    assert ids[2] != ids[3] and ids[2].startswith("b.mp4-") and ids[3].startswith("b.mp4-")
    assert ids[4] == "c"
    assert all(is_valid_source_id(source_id) for source_id in ids)
