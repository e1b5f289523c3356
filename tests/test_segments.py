"""One recording decoded in keyframe segments by worker processes: every frame once, in frame order."""

import multiprocessing
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.core.types import Frame
from pipeline.files import segments
from pipeline.files.segments import Segment, SegmentedVideoSource, decode_workers_for, plan_segments
from pipeline.files.sources import VideoFileSource
from tests.videos import index_image, read_index, variable_frame_rate

FRAMES = 400
CLOSED_GOP = "keyint=12:min-keyint=12:scenecut=0:bframes=0"
OPEN_GOP = "keyint=12:min-keyint=12:scenecut=0:bframes=3:b-adapt=0:open-gop=1"
ONE_KEYFRAME = "keyint=1000:scenecut=0:bframes=0"


def _write(path: Path, x264_params: str, frames: int = FRAMES, rotation: int | None = None) -> Path:
    """An H.264 MP4 at 25 fps whose frame i shows the number i."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25, options={"x264-params": x264_params})
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(index_image(index), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _packets(path: Path) -> list[tuple[int, bool]]:
    """(pts, keyframe) of every video packet, in decode order."""
    with av.open(str(path)) as container:
        return [(p.pts, p.is_keyframe) for p in container.demux(container.streams.video[0]) if p.size]


@pytest.fixture(scope="module")
def closed_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("segments") / "closed.mp4", CLOSED_GOP)


@pytest.fixture(scope="module")
def open_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("segments") / "open.mp4", OPEN_GOP)


def _assert_same_frames(ours: list, reference: list) -> None:
    assert [(f.index, f.pts) for f in ours] == [(f.index, f.pts) for f in reference]
    for mine, theirs in zip(ours, reference):
        assert mine.source_id == theirs.source_id
        assert mine.image.shape == theirs.image.shape
        assert np.array_equal(mine.image, theirs.image)


@pytest.mark.parametrize("video", ["closed_gop", "open_gop"])
def test_segments_decode_every_frame_once_in_order(video: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(video)
    assert len(plan_segments(path, None, 60)) > 3  # more segments than workers: dealt round-robin
    source = SegmentedVideoSource(path, workers=3, min_frames_per_segment=60)
    frames = list(source)
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [read_index(f.image) for f in frames] == list(range(FRAMES))
    _assert_same_frames(frames, list(VideoFileSource(path)))
    assert source.stopped_early is None
    assert source.frames_decoded == FRAMES
    assert source.expected_frames == FRAMES and source.info.width == 160
    assert not multiprocessing.active_children()


def test_mpeg_ts_whose_seeks_land_past_the_keyframe_is_split_the_same_way(tmp_path: Path) -> None:
    """MPEG-TS seeks by a timestamp search that can land past the keyframe: the segment seeks again, earlier."""
    path = _write(tmp_path / "open.ts", OPEN_GOP, frames=200)
    source = SegmentedVideoSource(path, workers=2, min_frames_per_segment=36)
    _assert_same_frames(list(source), list(VideoFileSource(path)))
    assert source.stopped_early is None


def test_a_variable_frame_rate_file_is_split_and_not_called_truncated(closed_gop: Path, tmp_path: Path) -> None:
    video = variable_frame_rate(closed_gop, tmp_path / "vfr.mkv")
    source = SegmentedVideoSource(video, workers=2, min_frames_per_segment=48)
    frames = list(source)
    assert len(plan_segments(video, None, 48)) > 1
    _assert_same_frames(frames, list(VideoFileSource(video)))
    assert len(frames) == FRAMES - 81 and source.stopped_early is None


def test_open_gop_file_has_leading_pictures_after_its_keyframes(open_gop: Path) -> None:
    """The open-GOP case is real: after a keyframe come frames shown before it, decoded by the previous segment."""
    packets = _packets(open_gop)
    keyframes = [position for position, (_, key) in enumerate(packets) if key][1:]
    assert keyframes
    assert all(packets[position + 1][0] < packets[position][0] for position in keyframes)


@pytest.mark.parametrize("stride, max_frames", [(3, None), (3, 50), (1, 130)])
def test_stride_and_max_frames_act_on_the_global_index(closed_gop: Path, stride: int, max_frames: int | None) -> None:
    source = SegmentedVideoSource(closed_gop, stride=stride, max_frames=max_frames, workers=3, min_frames_per_segment=48)
    reference = VideoFileSource(closed_gop, stride=stride, max_frames=max_frames)
    _assert_same_frames(list(source), list(reference))
    assert source.stopped_early is None
    assert source.expected_frames == reference.expected_frames


def test_rotation_is_applied_as_in_the_file_source(tmp_path: Path) -> None:
    path = _write(tmp_path / "rotated.mp4", CLOSED_GOP, frames=120, rotation=90)
    frames = list(SegmentedVideoSource(path, workers=2, min_frames_per_segment=36))
    assert frames[0].image.shape == (160, 96, 3)
    _assert_same_frames(frames, list(VideoFileSource(path)))


def test_plan_cuts_only_at_keyframes_with_the_right_first_indices(open_gop: Path) -> None:
    packets = _packets(open_gop)
    keyframe_pts = {pts for pts, key in packets if key}
    all_pts = [pts for pts, _ in packets]
    plan = plan_segments(open_gop, 3, min_frames_per_part=100)
    assert len(plan) == 3
    assert plan[0] == Segment(None, plan[1].start_pts, 0, plan[1].first_index)
    assert plan[-1].end_pts is None
    for previous, segment in zip(plan, plan[1:]):
        assert segment.start_pts in keyframe_pts
        assert previous.end_pts == segment.start_pts
        assert segment.first_index == sum(pts < segment.start_pts for pts in all_pts)
        assert segment.first_index == previous.first_index + previous.frames
    assert sum(segment.frames for segment in plan) == FRAMES
    assert all(segment.frames >= 100 for segment in plan)
    assert max(s.frames for s in plan) - min(s.frames for s in plan) <= 12  # balanced to within a GOP
    assert len(plan_segments(open_gop, 8, min_frames_per_part=150)) == 2  # never shorter than the minimum
    assert len(plan_segments(open_gop, 8, min_frames_per_part=500)) == 1


@pytest.mark.parametrize(
    "name, x264_params",
    [("one-keyframe.mp4", ONE_KEYFRAME), ("no-timestamps.h264", CLOSED_GOP)],  # a raw stream's packets have no pts
)
def test_a_file_that_cannot_be_split_is_decoded_in_this_process(tmp_path: Path, name: str, x264_params: str) -> None:
    path = _write(tmp_path / name, x264_params, frames=200)
    assert plan_segments(path, 4, min_frames_per_part=20) == [Segment(None, None, 0, 200)]
    source = SegmentedVideoSource(path, workers=3, min_frames_per_segment=20)
    frames = []
    for frame in source:
        assert not multiprocessing.active_children()
        frames.append(frame)
    _assert_same_frames(frames, list(VideoFileSource(path)))
    assert source.frames_decoded == 200 and source.stopped_early is None


@pytest.mark.parametrize("how", ["break", "close"])
def test_stopping_early_ends_the_workers_and_frees_their_memory(
    closed_gop: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rings: list[str] = []

    class RecordedRing(segments.FrameRing):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            rings.append(self.name)

    monkeypatch.setattr(segments, "FrameRing", RecordedRing)
    source = SegmentedVideoSource(closed_gop, workers=3, slots=2, min_frames_per_segment=48)
    if how == "break":
        for frame in source:
            if frame.index == 4:
                assert len(multiprocessing.active_children()) == 3
                break
        assert not multiprocessing.active_children()
    else:
        frames = iter(source)
        assert [next(frames).index for _ in range(5)] == list(range(5))
        assert len(multiprocessing.active_children()) == 3
    source.close()
    assert not multiprocessing.active_children()
    assert len(rings) == 3
    for name in rings:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_a_damaged_packet_is_skipped_and_the_frames_after_it_decoded_as_the_file_source_does(tmp_path: Path) -> None:
    path = _write(tmp_path / "damaged.mp4", CLOSED_GOP)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
        damaged = next(p for p in packets if p.pts == 250 * 512)  # frame 250, time base 1/12800
        position, size = damaged.pos, damaged.size
    data = bytearray(path.read_bytes())
    data[position : position + size] = bytes(size)
    path.write_bytes(data)
    source = SegmentedVideoSource(path, workers=3, min_frames_per_segment=48)
    frames = list(source)
    reference = VideoFileSource(path)
    _assert_same_frames(frames, list(reference))
    assert len(frames) == FRAMES - 1  # only the damaged packet's frame is lost
    assert read_index(frames[-1].image) == FRAMES - 1
    assert source.damage.packets == reference.damage.packets == 1
    assert "Invalid data" in source.damage.first_error and source.damage.first_at_s == pytest.approx(10.0, abs=0.2)  # frame 250, give or take the decoder threads
    assert source.stopped_early is None and reference.stopped_early is None
    assert not multiprocessing.active_children()


def test_a_segment_that_decodes_other_than_planned_is_continued_in_this_process(
    closed_gop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder that drops a frame breaks the planned indices: the rest is decoded here, counted as decoded."""
    plan = plan_segments(closed_gop, None, 48)
    wrong = [plan[0], Segment(plan[1].start_pts, plan[1].end_pts, plan[1].first_index, plan[1].frames + 1), *plan[2:]]
    monkeypatch.setattr(segments, "plan_segments", lambda *args: wrong)
    resumed: list[Segment] = []
    decode_here = SegmentedVideoSource._decode_here

    def record(self: SegmentedVideoSource, segment: Segment, limit: int | None) -> Iterator[Frame]:
        resumed.append(segment)
        return decode_here(self, segment, limit)

    monkeypatch.setattr(SegmentedVideoSource, "_decode_here", record)
    source = SegmentedVideoSource(closed_gop, stride=2, workers=2, min_frames_per_segment=48)
    _assert_same_frames(list(source), list(VideoFileSource(closed_gop, stride=2)))
    assert resumed == [Segment(plan[2].start_pts, None, plan[2].first_index, 0)]
    assert source.stopped_early is None and source.frames_decoded == FRAMES
    assert not multiprocessing.active_children()


def test_decode_workers_follow_the_cores() -> None:
    assert [decode_workers_for(cores) for cores in (1, 2, 3, 8, 16, 64)] == [1, 1, 1, 4, 8, 8]
    assert 1 <= decode_workers_for() <= segments.MAX_DECODE_WORKERS


def test_segment_workers_exit_and_free_their_memory_when_the_run_is_killed(tmp_path: Path) -> None:
    """kill -9 (or the OOM killer) of `process --decode-processes 2`: its decoder processes do not outlive it, nor
    do their shared-memory blocks."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from training.demo_model import SHIPPED_WEIGHTS
    from training.synthetic_video import default_script, render_scripted_video

    video = tmp_path / "long.mp4"
    render_scripted_video(video, default_script(20.0), duration_s=20.0, fps=25, size=(640, 360))
    run = subprocess.Popen([str(Path(sys.executable).parent / "emotion-stream"), "process", str(video), "--weights",
                            str(SHIPPED_WEIGHTS), "--out", str(tmp_path / "out"), "--quiet", "--decode-processes",
                            "2", "--cpu-backend", "pytorch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timeline = tmp_path / "out" / "long" / "timeline.jsonl"
    deadline = time.monotonic() + 120
    while not (timeline.exists() and timeline.stat().st_size > 0) and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before it could be killed"
        time.sleep(0.1)
    workers = [child for child in psutil.Process(run.pid).children(recursive=True) if "spawn" in " ".join(
        child.cmdline())]
    assert len(workers) == 2, "two segment workers decode the file"
    rings = {Path(mapped.path) for worker in workers for mapped in worker.memory_maps()
             if mapped.path.startswith("/dev/shm/")}
    assert rings, "the workers' shared-memory rings"
    run.send_signal(signal.SIGKILL)
    run.wait()
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"workers outlived the run: {[worker.pid for worker in alive]}"
    deadline = time.monotonic() + 10
    while (left := {ring for ring in rings if ring.exists()}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"shared memory left behind: {sorted(path.name for path in left)}"
