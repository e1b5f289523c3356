"""The PyAV video-file source: times, stride, rotation, damaged and wrong inputs."""

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.core.errors import ConfigError, SourceError
from pipeline.core.source_ids import source_id_for
from pipeline.files.sources import VideoFileSource
from tests.videos import gradient_frames, truncate, variable_frame_rate, write_video


def test_frames_carry_presentation_times_in_seconds(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", gradient_frames(50), fps=25)
    source = VideoFileSource(video)
    frames = list(source)
    assert [f.index for f in frames] == list(range(50))
    assert frames[0].pts == pytest.approx(0.0, abs=1e-6)
    assert frames[10].pts == pytest.approx(0.4, abs=1e-6)
    assert frames[0].image.shape == (96, 160, 3) and frames[0].image.dtype == np.uint8
    assert source.info.fps == pytest.approx(25)
    assert source.stopped_early is None


def test_stride_keeps_indices_and_times_of_the_original_frames(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", gradient_frames(30), fps=30)
    frames = list(VideoFileSource(video, stride=4))
    assert [f.index for f in frames] == list(range(0, 30, 4))
    assert frames[2].pts == pytest.approx(8 / 30, abs=1e-6)


@pytest.mark.parametrize("codec", ["mpeg4", "libvpx-vp9"])
def test_other_codecs_and_containers(tmp_path: Path, codec: str) -> None:
    suffix = ".webm" if "vp9" in codec else ".avi"
    video = write_video(tmp_path / f"a{suffix}", gradient_frames(12), fps=12, codec=codec)
    assert len(list(VideoFileSource(video))) == 12


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied_like_ffmpeg_autorotate(tmp_path: Path, rotation: int) -> None:
    video = write_video(tmp_path / "r.mp4", gradient_frames(3), rotation=rotation)
    ours = next(iter(VideoFileSource(video))).image
    ffmpeg = _ffmpeg_first_frame(video)
    assert ours.shape == ffmpeg.shape
    assert np.abs(ours.astype(int) - ffmpeg.astype(int)).mean() < 3


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="video not found: .*missing.mp4"):
        VideoFileSource(tmp_path / "missing.mp4")


def test_a_file_that_is_not_video_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are interview notes, not a video\n" * 50)
    with pytest.raises(SourceError, match="not a readable video: .*notes.mp4"):
        VideoFileSource(text)


@pytest.mark.parametrize("name", ["full.mkv", "faststart.mp4"])
def test_truncated_video_yields_what_decodes_and_says_where_it_stopped(tmp_path: Path, name: str) -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (96, 160, 3), np.uint8) for i in range(60)]
    video = truncate(write_video(tmp_path / name, frames, fps=30, faststart=name.startswith("fast")), 0.5)
    source = VideoFileSource(video)
    decoded = list(source)
    assert 0 < len(decoded) < 60
    assert source.stopped_early is not None
    assert f"frame {len(decoded)}" in source.stopped_early


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_variable_frame_rate_file_is_decoded_to_its_end_and_not_called_truncated(tmp_path: Path, suffix: str) -> None:
    video = variable_frame_rate(write_video(tmp_path / "in.mp4", gradient_frames(150), fps=30), tmp_path / f"vfr{suffix}")
    source = VideoFileSource(video)
    frames = list(source)
    assert len(frames) == 150 - 81
    assert frames[20].pts - frames[19].pts == pytest.approx(82 / 30, abs=0.002)  # the gap keeps its time
    assert source.stopped_early is None and source.damage.packets == 0


def test_a_truncated_variable_frame_rate_file_is_still_called_truncated(tmp_path: Path) -> None:
    video = variable_frame_rate(write_video(tmp_path / "in.mp4", gradient_frames(150), fps=30), tmp_path / "vfr.mkv")
    source = VideoFileSource(truncate(video, 0.6))
    frames = list(source)
    assert 0 < len(frames) < 69
    assert source.stopped_early is not None and "truncated" in source.stopped_early


def test_truncated_mp4_without_its_index_is_refused_with_the_reason(tmp_path: Path) -> None:
    video = truncate(write_video(tmp_path / "cut.mp4", gradient_frames(30)), 0.6)
    with pytest.raises(SourceError, match="cut.mp4 .*index.*cut short"):
        VideoFileSource(video)


def test_source_id_from_file_name_is_contract_valid() -> None:
    assert re.fullmatch(r"Interview_03_final-[0-9a-f]{8}", source_id_for("/x/Interview 03 (final).mov"))


@pytest.mark.parametrize("source_id", ["bad id/with:colons", "", "..", "cam\n"])
def test_invalid_source_id_is_a_configuration_error(tmp_path: Path, source_id: str) -> None:
    video = write_video(tmp_path / "a.mp4", gradient_frames(2))
    with pytest.raises(ConfigError, match="invalid source id"):
        VideoFileSource(video, source_id=source_id)


def test_a_stream_url_is_refused_with_its_password_masked() -> None:
    with pytest.raises(SourceError) as error:
        VideoFileSource("rtsp://admin:S3cretX@Pa55@10.0.0.1/stream")
    assert str(error.value).startswith("rtsp://admin:***@10.0.0.1/stream: a URL, not a video file path")
    assert "S3cretX" not in str(error.value) and "Pa55" not in str(error.value)


def _ffmpeg_first_frame(video: Path) -> np.ndarray:
    """The first frame as FFmpeg's command line shows it (autorotate on), decoded from PNG."""
    png = subprocess.run(
        [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-i", str(video), "-frames:v", "1",
         "-f", "image2pipe", "-vcodec", "png", "-"],
        capture_output=True, check=True,
    ).stdout
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
