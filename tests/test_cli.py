"""The command line: clear one-line errors and exit codes, process and subscribe end to end."""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import redis

from pipeline.cli import main
from pipeline.sinks.redis_server import free_port
from tests.redis_readers import wait_for_blocked_reader
from tests.videos import ffprobe_decoded_frames, gradient_frames, truncate, variable_frame_rate, write_video


def _process(video: Path, weights: Path, imgsz: int, out: Path, *extra: str) -> list[str]:
    return ["process", str(video), "--weights", str(weights), "--imgsz", str(imgsz), "--out", str(out),
            "--cpu-backend", "pytorch", "--quiet", *extra]


def test_process_prints_a_summary_and_writes_redis(
    scripted_video: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video, truth = scripted_video
    code = main(_process(video, weights, imgsz, tmp_path, "--redis", redis_url, "--source-id", "cli"))
    out = capsys.readouterr().out
    assert code == 0
    assert f"frames {len(truth)}" in out and "frames/s" in out
    assert "%" in out  # share of time per emotion
    assert f"redis: {len(truth)} entries in emotion:frames:cli" in out
    assert redis.Redis.from_url(redis_url).xlen("emotion:frames:cli") == len(truth)


def test_redis_url_from_environment(
    scripted_video: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video, truth = scripted_video
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(_process(video, weights, imgsz, tmp_path, "--source-id", "env")) == 0
    assert redis.Redis.from_url(redis_url).xlen("emotion:frames:env") == len(truth)


def _error_of(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "an error must be printed"
    assert not any("Traceback" in line for line in err)
    return code, err[-1]


def test_missing_video(weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _error_of(_process(tmp_path / "gone.mp4", weights, imgsz, tmp_path), capsys)
    assert code == 3 and "video not found" in err and "gone.mp4" in err


def test_file_that_is_not_video(weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fake = tmp_path / "slides.mp4"
    fake.write_bytes(b"%PDF-1.4 not a video" * 200)
    code, err = _error_of(_process(fake, weights, imgsz, tmp_path), capsys)
    assert code == 3 and "not a readable video" in err and "slides.mp4" in err


def test_truncated_video_is_processed_up_to_the_damage(
    weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video = truncate(write_video(tmp_path / "rec.mkv", gradient_frames(60), fps=30), 0.5)
    code, err = _error_of(_process(video, weights, imgsz, tmp_path / "out"), capsys)
    assert code == 3 and "rec.mkv" in err and "truncated" in err
    lines = (tmp_path / "out" / "truncated-rec" / "timeline.jsonl").read_text().splitlines()
    assert 0 < len(lines) < 60


def test_damaged_packets_are_skipped_counted_and_reported(
    weights: Path, imgsz: int, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video = write_video(tmp_path / "rec.mp4", gradient_frames(120), fps=30)
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 300] = random.Random(1).randbytes(300)
    video.write_bytes(data)
    code, err = _error_of(_process(video, weights, imgsz, tmp_path / "out", "--redis", redis_url), capsys)
    assert code == 3 and "rec.mp4" in err and "damaged packet" in err
    summary = json.loads((tmp_path / "out" / "rec" / "summary.json").read_text())
    decodable = ffprobe_decoded_frames(video)
    assert summary["frames"] == decodable > 100  # frames after the damage are processed too
    assert summary["damaged_packets"] > 0 and "damaged packet" in summary["source_problem"]
    status = json.loads(redis.Redis.from_url(redis_url).hget("emotion:sources", "rec"))
    assert status["state"] == "ended" and status["damaged_packets"] == summary["damaged_packets"]
    assert redis.Redis.from_url(redis_url).xlen("emotion:frames:rec") == decodable


def test_variable_frame_rate_file_is_processed_as_complete(
    weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video = variable_frame_rate(write_video(tmp_path / "in.mp4", gradient_frames(150), fps=30), tmp_path / "vfr.mkv")
    assert main(_process(video, weights, imgsz, tmp_path / "out")) == 0
    assert "warning" not in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "vfr" / "summary.json").read_text())
    assert summary["frames"] == 69 and summary["source_problem"] is None and summary["damaged_packets"] == 0


@pytest.mark.parametrize(("width", "height"), [(1, 1), (2, 2), (33, 17)])
def test_report_with_annotated_video_of_a_tiny_or_odd_sized_video(
    weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture, width: int, height: int
) -> None:
    frames = [np.full((height, width, 3), 90 + 10 * i, np.uint8) for i in range(6)]
    video = write_video(tmp_path / "tiny.mkv", frames, fps=10, pix_fmt="yuv444p")
    assert main(_process(video, weights, imgsz, tmp_path / "out", "--report", "--annotate")) == 0
    assert "Traceback" not in capsys.readouterr().err
    with av.open(str(tmp_path / "out" / "tiny" / "annotated.mp4")) as container:
        decoded = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(decoded) == 6
    assert decoded[0].shape == (height + height % 2, width + width % 2, 3)  # padded to even sides
    assert decoded[-1][0, 0].mean() > 100  # the video's own gray pixel (140), not cropped away (black)


def test_missing_weights(scripted_video: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _error_of(_process(scripted_video[0], tmp_path / "w.pt", 160, tmp_path), capsys)
    assert code == 4 and "weights not found" in err and "w.pt" in err


def test_unreachable_redis_names_the_url_and_keeps_files(
    scripted_video: tuple, weights: Path, imgsz: int, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video, truth = scripted_video
    port = free_port()
    url = f"redis://:Secret@Wrong@127.0.0.1:{port}/0"  # a password with an @ in it
    code, err = _error_of(_process(video, weights, imgsz, tmp_path, "--redis", url, "--source-id", "x"), capsys)
    assert code == 5 and f"redis://***@127.0.0.1:{port}/0" in err and "file outputs are still written" in err
    assert len((tmp_path / "x" / "timeline.jsonl").read_text().splitlines()) == len(truth)
    summary = (tmp_path / "x" / "summary.json").read_text()
    assert "redis://***@127.0.0.1" in summary
    assert not any("Secret" in text or "Wrong" in text for text in (err, summary))


def test_malformed_config_key(scripted_video: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("model:\n  threshold: 0.5\n")
    code, err = _error_of(["process", str(scripted_video[0]), "--config", str(config)], capsys)
    assert code == 2 and "unknown key 'model.threshold'" in err and "pipeline.yaml" in err


def test_subscribe_replays_a_finished_source(
    scripted_video: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video, truth = scripted_video
    main(_process(video, weights, imgsz, tmp_path, "--redis", redis_url, "--source-id", "rec"))
    capsys.readouterr()
    assert main(["subscribe", "rec", "--redis", redis_url, "--from-start", "--until-ended", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(len(truth)))


def test_console_script_follows_a_live_run(
    scripted_video: tuple, weights: Path, imgsz: int, redis_url: str, tmp_path: Path
) -> None:
    video, truth = scripted_video
    script = Path(sys.executable).parent / "emotion-stream"
    subscriber = subprocess.Popen(
        [str(script), "subscribe", "live", "--until-ended"], stdout=subprocess.PIPE, text=True,
        env=os.environ | {"REDIS_URL": redis_url},
    )
    try:
        wait_for_blocked_reader(redis_url)
        subprocess.run([str(script), *_process(video, weights, imgsz, tmp_path, "--redis", redis_url,
                        "--source-id", "live")], check=True, capture_output=True)
        out, _ = subscriber.communicate(timeout=60)
    finally:
        subscriber.kill()
    lines = out.splitlines()
    assert len(lines) == len(truth)
    assert "frame      0" in lines[0] and "face(s)" in lines[0]



def test_sigterm_mid_run_keeps_every_result_written_so_far(weights: Path, imgsz: int, tmp_path: Path) -> None:
    video = write_video(tmp_path / "long.mp4", gradient_frames(1500, 320, 180), fps=30)
    script = Path(sys.executable).parent / "emotion-stream"
    run = subprocess.Popen(
        [str(script), *_process(video, weights, imgsz, tmp_path / "out", "--batch", "1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    timeline = tmp_path / "out" / "long" / "timeline.jsonl"
    for _ in range(600):
        if timeline.exists() and timeline.stat().st_size > 0:
            break
        time.sleep(0.05)
    run.send_signal(subprocess.signal.SIGTERM)
    _out, err = run.communicate(timeout=30)
    assert run.returncode == 130 and "interrupted" in err and "Traceback" not in err
    frames = [json.loads(line)["frame"] for line in timeline.read_text().splitlines()]
    assert 0 < len(frames) < 1500 and frames == list(range(len(frames)))
    summary = json.loads((tmp_path / "out" / "long" / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["frames"] == len(frames)


def test_a_stream_url_given_to_process_is_refused_with_its_password_masked(
    capsys: pytest.CaptureFixture,
) -> None:
    code, err = _error_of(["process", "rtsp://admin:S3cretX@Pa55@10.0.0.1/stream", "--quiet"], capsys)
    assert code == 3 and err.startswith("emotion-stream: error: rtsp://admin:***@10.0.0.1/stream: a URL")
    assert "S3cretX" not in err and "Pa55" not in err


@pytest.mark.parametrize("source_id", ["", "..", ".", "cam\n", "bad id"])
def test_an_invalid_source_id_is_a_configuration_error(
    source_id: str, scripted_video: tuple, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    code, err = _error_of(["process", str(scripted_video[0]), "--out", str(out), "--source-id", source_id], capsys)
    assert code == 2 and err.startswith("emotion-stream: error: --source-id: invalid source id")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_folder_given_as_config_is_named_as_a_folder(scripted_video: tuple, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    code, err = _error_of(["process", str(scripted_video[0]), "--config", str(tmp_path)], capsys)
    assert code == 2 and err == f"emotion-stream: error: config file {tmp_path} is a folder, not a YAML file"


def test_outputs_of_any_file_name_stay_in_their_own_folder(weights: Path, imgsz: int, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Non-ASCII names, a.mp4 beside a.mkv, a file named ...mp4 (its stem is '..') and a file given
    twice: one job, each file once, each in its own folder under --out, nothing beside it."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("面接.mp4", "会議.mp4", "a.mp4", "a.mkv", "...mp4"):
        write_video(videos / name, gradient_frames(6))
    out = tmp_path / "runs" / "out"
    code = main(["process", str(videos / "a.mp4"), *_process(videos, weights, imgsz, out)[1:]])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.err.count("is given more than once") == 1 and "a.mp4 is given more than once" in printed.err
    assert "5 files: 5 complete" in printed.out
    folders = sorted(folder.name for folder in out.iterdir() if folder.is_dir())
    assert len(folders) == 5 and {"a.mp4", "a.mkv"} <= set(folders)
    assert all((out / folder / "timeline.jsonl").is_file() for folder in folders)
    assert [path.name for path in (tmp_path / "runs").iterdir()] == ["out"], "nothing may be written beside --out"


def test_report_refuses_a_timeline_whose_face_id_is_not_a_track_number(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Face ids name the report's person_<id>.png: a doctored timeline must not choose a path."""
    run = tmp_path / "run"
    (run / "person_").mkdir(parents=True)
    face = {"id": "/../../escaped", "box": [0, 0, 10, 10], "emotion": "happy", "score": 0.9,
            "scores": {"happy": 0.9, "sad": 0.1}}
    record = {"v": "1", "source": "run", "frame": 0, "pts": 0.0, "ts": 0, "lat": 0, "faces": [face], "model": "m"}
    (run / "timeline.jsonl").write_text(json.dumps(record) + "\n")
    code, err = _error_of(["report", str(run)], capsys)
    assert code == 3 and "line 1 is not a frame record: faces[0].id is not an integer" in err
    assert not list(tmp_path.glob("*.png")) and not list(run.glob("*.png"))


def test_report_leaves_out_a_last_line_cut_short_and_names_a_bad_one(
    scripted_video: tuple, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """What a full disk or kill -9 leaves (a last line without its end) is left out with a warning; a bad line
    elsewhere is one line naming it, exit 3; a report that cannot be written is one line, exit 5."""
    assert main(["process", str(scripted_video[0]), "--weights", str(weights), "--out", str(tmp_path), "--quiet",
                 "--source-id", "talk"]) == 0
    run = tmp_path / "talk"
    lines = (run / "timeline.jsonl").read_text().splitlines(keepends=True)
    (run / "timeline.jsonl").write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    events = (run / "events.jsonl").read_text()
    (run / "events.jsonl").write_text(events[: len(events) - 7])
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").exists()
    (run / "timeline.jsonl").write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    code, err = _error_of(["report", str(run)], capsys)
    assert code == 3 and "timeline.jsonl line 2 is not a frame record" in err
    (run / "timeline.jsonl").write_text("".join(lines))
    (run / "report.json").unlink()
    (run / "report.json").mkdir()  # a place the report cannot be written, even by root
    code, err = _error_of(["report", str(run)], capsys)
    assert code == 5 and f"cannot write the report into {run}: Is a directory" in err
