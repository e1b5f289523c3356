"""Fuzzing damaged and truncated H.264 files (MP4 and MKV): no traceback, the documented outcome, every frame
FFmpeg can decode.

Each case damages a real file with a seeded RNG (random bytes, zeroed runs, bit flips, truncation,
or several of these) and checks what the file sources make of it against a plain PyAV loop over
the same file (demux, decode, skip a packet the decoder rejects: what `ffmpeg -i` does):

- opening either works or raises SourceError (the CLI's one line and exit 3);
- decoding never raises, delivers exactly the frames the plain loop decodes and counts the same
  damaged packets;
- every frame whose packet lies wholly before the first damaged byte (in the media data) is kept;
- the keyframe-segment decoder delivers the same frames, images and counts as the file source.

A handful of cases go through the real `process` command with the tiny model. The default run
is bounded (a few hundred cases); set EMOTION_STREAM_FUZZ_CASES for a longer soak.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.errors import SourceError
from pipeline.files.segments import SegmentedVideoSource
from pipeline.files.sources import VideoFileSource
from tests.videos import index_image, read_index, write_video

CASES = int(os.environ.get("EMOTION_STREAM_FUZZ_CASES", "60"))
"""Decode-only cases over all containers (`make soak` runs 3,000); a twentieth of them also run the segment decoder."""
FRAMES = 72
GOP = {"x264-params": "keyint=24:min-keyint=24:scenecut=0:bframes=2"}
CONTAINERS = ("mp4", "faststart.mp4", "mkv")
DECODER_DELAY_PACKETS = 3
"""Packets just before the damage whose frames FFmpeg itself may lose: the B-frames (2) and one Matroska block."""


@dataclass(frozen=True)
class Original:
    """An undamaged file: its bytes, where its media data lies, and the frame index each packet holds."""

    path: Path
    data: bytes
    media: tuple[int, int]
    """Byte range from the first packet's start to the last packet's end."""
    packets: list[tuple[int, int, int]]
    """(byte offset, size, frame index) of every video packet."""


@dataclass(frozen=True)
class Damaged:
    """A damaged copy and what was done to it."""

    path: Path
    what: str
    first_damaged_byte: int
    only_media: bool
    """Every damaged byte lies in the media data (header and index intact; a cut may remove what follows)."""


@dataclass(frozen=True)
class PlainDecode:
    """What a plain PyAV loop makes of a file: the index each decoded frame shows, and the damaged packets
    (rejected by the decoder, or decoded into a frame it flags corrupt)."""

    indices: list[int]
    damaged: int

    @property
    def frames(self) -> int:
        """Frames decoded."""
        return len(self.indices)


def _original(folder: Path, container: str, frames: int = FRAMES) -> Original:
    faststart = container.startswith("faststart")
    path = write_video(folder / f"original-{frames}.{container}", [index_image(i) for i in range(frames)], fps=25,
                       faststart=faststart, codec_options=GOP)
    with av.open(str(path)) as opened:
        demuxed = [p for p in opened.demux(opened.streams.video[0]) if p.size]
        ranks = {pts: rank for rank, pts in enumerate(sorted(p.pts for p in demuxed))}
        packets = [(p.pos, p.size, ranks[p.pts]) for p in demuxed]
    media = (min(pos for pos, _, _ in packets), max(pos + size for pos, size, _ in packets))
    return Original(path, path.read_bytes(), media, packets)


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Original]:
    folder = tmp_path_factory.mktemp("fuzz")
    return {container: _original(folder, container) for container in CONTAINERS}


def _damage(original: Original, rng: random.Random, target: Path) -> Damaged:
    """A seeded mix of overwritten bytes, zeroed runs, bit flips and truncation."""
    data = bytearray(original.data)
    low, high = original.media
    kinds = rng.sample(["bytes", "zeros", "flips", "truncate"], k=rng.choice([1, 1, 1, 2]))
    done, spans = [], []
    for kind in kinds:
        if kind == "bytes":
            size, at = rng.randint(1, 300), rng.randrange(low, high)
            data[at : at + size] = bytes(rng.randrange(256) for _ in range(len(data[at : at + size])))
            done.append(f"{size} random bytes at {at}")
        elif kind == "zeros":
            size, at = rng.randint(1, 64), rng.randrange(low, high)
            data[at : at + size] = bytes(len(data[at : at + size]))
            done.append(f"{size} zero bytes at {at}")
        elif kind == "flips":
            at = rng.randrange(0, len(data))  # anywhere, the header and index included
            offsets = sorted(rng.sample(range(at, min(len(data), at + 2000)), k=min(8, len(data) - at)))
            for offset in offsets:
                data[offset] ^= 1 << rng.randrange(8)
            done.append(f"bit flips from {at}")
            size = offsets[-1] + 1 - at
        else:
            at = size = rng.randrange(low, len(data))
            del data[at:]
            done.append(f"cut at {at}")
            size = 0
        spans.append((at, at + size))
    target.write_bytes(data)
    only_media = all(low <= start and end <= high for start, end in spans)
    return Damaged(target, ", ".join(done), min(start for start, _ in spans), only_media)


def _opens(path: Path) -> bool:
    """Whether FFmpeg opens `path` at all."""
    try:
        av.open(str(path)).close()
    except av.error.FFmpegError:
        return False
    return True


def _plain_decode(path: Path) -> PlainDecode:
    """The reference: `ffmpeg -i` in PyAV, on one thread as the sources decode (how damage is concealed depends
    on the thread count); a demuxing error ends the file."""
    indices, damaged = [], 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    damaged += 1
                    continue
                indices += [read_index(frame.to_ndarray(format="bgr24")) for frame in decoded]
                damaged += sum(frame.is_corrupt for frame in decoded)
        except av.error.FFmpegError:
            pass
    return PlainDecode(indices, damaged)


def _kept_before_damage(original: Original, damaged: Damaged) -> set[int]:
    """Indices of the frames whose packets lie wholly before the first damaged byte (none when the header is hit),
    but for the last few: a frame waits in the decoder for the B-frames shown before it, and Matroska's
    demuxer drops the block before the one it cannot read (FFmpeg loses these too)."""
    if not damaged.only_media:
        return set()
    before = [index for pos, size, index in original.packets if pos + size <= damaged.first_damaged_byte]
    return set(before[:-DECODER_DELAY_PACKETS])


def _check_file_source(original: Original, damaged: Damaged) -> tuple[list[str], VideoFileSource | None, list]:
    """Problems found decoding `damaged` with the file source, the source, and its frames."""
    try:
        source = VideoFileSource(damaged.path)
    except SourceError:
        return [], None, []  # refused with one line: the documented outcome of an unreadable file
    frames = list(source)
    reference = _plain_decode(damaged.path)
    problems = []
    if [read_index(frame.image) for frame in frames] != reference.indices:
        problems.append(f"{len(frames)} frames, FFmpeg decodes {reference.frames} (or others)")
    if source.damage.packets != reference.damaged:
        problems.append(f"{source.damage.packets} damaged packets counted, FFmpeg meets {reference.damaged}")
    missing = _kept_before_damage(original, damaged) - {read_index(frame.image) for frame in frames}
    if missing:
        problems.append(f"frames before the damage lost: {sorted(missing)[:10]}")
    if [frame.index for frame in frames] != list(range(len(frames))):
        problems.append("frame indices are not consecutive")
    return problems, source, frames


def _cases(container: str, count: int) -> list[int]:
    return [CONTAINERS.index(container) * 1_000_000 + case for case in range(count)]


@pytest.mark.parametrize("container", CONTAINERS)
def test_damaged_files_decode_every_frame_ffmpeg_decodes(
    originals: dict[str, Original], container: str, tmp_path: Path
) -> None:
    failures = []
    for seed in _cases(container, CASES // len(CONTAINERS)):
        damaged = _damage(originals[container], random.Random(seed), tmp_path / f"damaged.{container}")
        problems, _source, _frames = _check_file_source(originals[container], damaged)
        failures += [f"seed {seed} ({damaged.what}): {problem}" for problem in problems]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("container", CONTAINERS)
def test_segment_decoding_of_damaged_files_matches_the_file_source(
    originals: dict[str, Original], container: str, tmp_path: Path
) -> None:
    failures = []
    for seed in _cases(container, max(3, CASES // 20 // len(CONTAINERS))):
        damaged = _damage(originals[container], random.Random(seed), tmp_path / f"damaged.{container}")
        problems, source, frames = _check_file_source(originals[container], damaged)
        if source is not None:
            segmented = SegmentedVideoSource(damaged.path, workers=2, min_frames_per_segment=24)
            ours = list(segmented)
            if [(f.index, f.pts) for f in ours] != [(f.index, f.pts) for f in frames]:
                problems.append(f"segments give {len(ours)} frames, the file source {len(frames)}")
            elif not all(np.array_equal(a.image, b.image) for a, b in zip(ours, frames)):
                problems.append("segments decode other images than the file source")
            if segmented.damage.packets != source.damage.packets:
                problems.append(f"segments count {segmented.damage.packets} damaged packets, "
                                f"the file source {source.damage.packets}")
            if (segmented.stopped_early is None) != (source.stopped_early is None):
                problems.append(f"segments end with {segmented.stopped_early!r}, the file source {source.stopped_early!r}")
        failures += [f"seed {seed} ({damaged.what}): {problem}" for problem in problems]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("container", "seed", "decode_processes"),
                         [("mp4", 11, 1), ("faststart.mp4", 12, 1), ("mkv", 13, 2), ("mp4", 14, 2)])
def test_process_command_on_damaged_files_exits_as_documented(
    weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture,
    container: str, seed: int, decode_processes: int,
) -> None:
    original = _original(tmp_path, container, frames=300)  # long enough for segments of 64 frames
    rng = random.Random(seed)
    target = tmp_path / f"damaged{Path(container).suffix}"
    damaged = _damage(original, rng, target)
    while not _opens(damaged.path) or _plain_decode(damaged.path).damaged == 0:  # damage to skip and count
        damaged = _damage(original, rng, target)
    code = main(["process", str(damaged.path), "--weights", str(weights), "--imgsz", str(imgsz), "--out",
                 str(tmp_path / "out"), "--cpu-backend", "pytorch", "--quiet",
                 "--decode-processes", str(decode_processes)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    summary = json.loads((tmp_path / "out" / "damaged" / "summary.json").read_text())
    reference = _plain_decode(damaged.path)
    assert summary["frames"] == reference.frames > 0
    assert summary["damaged_packets"] == reference.damaged > 0
    assert code == 3 and summary["source_problem"]
    assert f"damaged packets {reference.damaged}" in captured.out
    warning = captured.err.strip().splitlines()[-1]
    assert str(damaged.path) in warning and "damaged packet" in warning
    timeline = (tmp_path / "out" / "damaged" / "timeline.jsonl").read_text().splitlines()
    assert len(timeline) == reference.frames
