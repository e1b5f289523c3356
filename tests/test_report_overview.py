"""The report's overview: the frames it shows are the frames at their times, in any container; odd runs still report."""

import json
import subprocess
from pathlib import Path

import cv2
import pytest

from pipeline.cli import main
from pipeline.files.report_overview import frames_at
from pipeline.files.sources import VideoFileSource
from tests.videos import index_image, read_index, write_video

GOP = {"x264-params": "keyint=24:min-keyint=24:scenecut=0:bframes=2"}


@pytest.fixture(scope="module")
def index_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """72 frames at 30 fps (times that are not whole milliseconds), each showing its own index, GOP 24, B-frames."""
    path = tmp_path_factory.mktemp("overview") / "index.mp4"
    return write_video(path, [index_image(i) for i in range(72)], fps=30, codec_options=GOP)


@pytest.mark.parametrize("container", ["mp4", "ts", "mkv", "avi", "h264"])
def test_overview_frames_are_the_frames_at_their_times(index_mp4: Path, tmp_path: Path, container: str) -> None:
    """Seeking lands on the very frame the timeline counted at that time, or decoding in order finds it
    (MPEG-TS seeks imprecisely, raw H.264 has no timestamps)."""
    video = index_mp4
    if container != "mp4":
        video = tmp_path / f"index.{container}"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(index_mp4), "-c", "copy", str(video)], check=True)
    timeline = [(round(frame.pts, 3), frame.index) for frame in VideoFileSource(video)]  # as timeline.jsonl keeps them
    picks = [timeline[i] for i in (0, 5, 37, len(timeline) - 1)]
    images = frames_at(video, [pts for pts, _index in picks])
    assert [read_index(image) for image in images] == [index for _pts, index in picks]


def test_a_run_without_people_and_a_wrong_video_report_in_one_line(
    tmp_path: Path, weights: Path, imgsz: int, capsys: pytest.CaptureFixture
) -> None:
    blank = write_video(tmp_path / "blank.mp4", [index_image(0) * 0 + 128 for _ in range(12)], fps=12)
    out = tmp_path / "runs"
    assert main(["process", str(blank), "--weights", str(weights), "--imgsz", str(imgsz), "--out", str(out),
                 "--report"]) == 0
    run = out / "blank"
    assert json.loads((run / "report.json").read_text()) == []
    assert cv2.imread(str(run / "overview.png")) is not None
    (run / "person_7.png").write_bytes(b"from an earlier report")
    capsys.readouterr()
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    assert main(["report", str(run), "--video", str(not_video)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"not a readable video: {not_video}" in err
    assert main(["report", str(run), "--video", str(tmp_path)]) == 3
    assert "not a file" in capsys.readouterr().err
    assert (run / "person_7.png").exists(), "a refused --video rewrites nothing"
    assert main(["report", str(run)]) == 0
    assert not (run / "person_7.png").exists(), "an earlier report's plots are not this run's people"
    assert "No tracked person in this run." in (run / "report.md").read_text()
