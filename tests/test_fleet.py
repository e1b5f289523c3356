"""The Ray fleet on a real two-node cluster (tests/ray_cluster.py) in a private network namespace: an archive
and RTSP cameras through `process/serve --cluster`, the second node killed mid-run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.blocked_imports import emotion_stream_without
from tests.fleet_scenarios import ARCHIVE_FILES, ARCHIVE_FRAMES, CAMERAS, CLIP_FRAMES, CLIPS
from tests.netns import namespace_unavailable, run_scenario

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed (pip install '.[cluster]')", allow_module_level=True)
if reason := namespace_unavailable():
    pytest.skip(reason, allow_module_level=True)

SCENARIOS = "tests.fleet_scenarios"


def _scenario(name: str) -> dict:
    outcome = run_scenario(SCENARIOS, [name], timeout=900)
    assert outcome.run.returncode == 0, outcome.run.stderr[-6000:]
    assert outcome.stray_processes == []
    return outcome.result


def test_archive_every_frame_exactly_once_when_a_node_dies() -> None:
    result = _scenario("archive_node_loss")
    assert result["rc"] == 0, result["stderr"]
    assert result["on_node2_at_kill"], "node 2 was writing no file when it was killed"
    assert "lost" in result["stderr"] and "6 files: 6 complete" in result["stdout"]
    for source_id, frames in result["frames"].items():
        assert frames == list(range(ARCHIVE_FRAMES)), f"{source_id}: frames not exactly once, in order"
    assert len(result["frames"]) == ARCHIVE_FILES
    for source_id in result["on_node2_at_kill"]:  # finished by the head's actor, from where node 2 stopped
        assert result["final"][source_id]["node"] == result["head"]
        assert result["final"][source_id]["state"] == "ended"


def test_cameras_continue_on_the_surviving_node_within_15_s() -> None:
    result = _scenario("cameras_node_loss")
    moved = [name for name in CAMERAS if result["placed"][name] == result["node2"]]
    assert moved and len(moved) < len(CAMERAS), result["placed"]
    print(f"node 2 dead after {result['dead_after_s']:.1f}s; moved cameras written again from the head after "
          f"{result['continued_after_s']} s")
    for name in moved:
        assert result["continued_after_s"][name] <= 15.0, result["continued_after_s"]
    assert all(grew > 0 for grew in result["stayed_grew"].values()), result["stayed_grew"]
    # the controller's Prometheus endpoint counts every camera, wherever it ran
    frames = result["prometheus_frames"]
    assert set(frames) == set(CAMERAS + CLIPS)
    assert all(frames[name] > 25 for name in CAMERAS) and all(frames[clip] == CLIP_FRAMES for clip in CLIPS), frames
    assert result["rc"] == 0, result["stderr"]
    for name in CAMERAS:  # SIGTERM drained the fleet: every camera ended, on the head
        assert result["final"][name]["state"] == "ended" and result["final"][name]["node"] == result["head"]
    # the file on node 2 had ended before the kill: it stays ended with its frames once, it is not moved
    assert sorted(result["placed"][clip] for clip in CLIPS) == sorted([result["head"], result["node2"]])
    assert result["clip_frames"] == {clip: list(range(CLIP_FRAMES)) for clip in CLIPS}
    moves = [line for line in result["stdout"].splitlines() if line.startswith("moved: ")]
    assert moves and not any(clip in line for line in moves for clip in CLIPS), moves
    assert all(result["final"][clip]["state"] == "ended" for clip in CLIPS)


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("emotion-stream: error:")]


def test_local_cluster_a_refused_file_alone_and_errors_in_one_line() -> None:
    result = _scenario("local_cluster")
    assert result["local_rc"] == 5, result["local"]["stderr"]  # the Redis problem of clip3, the others written
    assert "3 files: 2 complete, 1 with problems (clip3)" in result["local"]["stdout"]
    assert result["frames"] == {"clip1": list(range(60)), "clip2": list(range(60)), "clip3": [0]}
    assert len(_error_lines(result["local"]["stderr"])) == 1
    assert "emotion:frames:clip3 holds 1 entries" in result["local"]["stderr"]
    assert result["missing_rc"] == 4
    missing = _error_lines(result["missing"]["stderr"])
    assert len(missing) == 1 and missing[0].startswith("emotion-stream: error: weights not found: "), missing
    assert result["auto_rc"] == 6
    error = _error_lines(result["auto"]["stderr"])
    assert len(error) == 1 and "cannot join the Ray cluster at auto" in error[0], result["auto"]["stderr"]
    # SIGINT with files still waiting: the running one is interrupted, the rest never start, exit 130
    assert result["interrupted_rc"] == 130, result["interrupted"]
    assert "4 files: 0 complete, 4 interrupted" in result["interrupted"]["stdout"]
    states = result["interrupted_states"]  # one file an actor (local Ray: 2 actors of 1 core), the rest not begun
    assert set(states.values()) == {"interrupted"} and 1 <= len(states) <= 2, states


def test_cluster_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not read: the cluster check comes first")
    run = emotion_stream_without(["process", "--cluster", "local", str(video), "--weights", "w.pt"], tmp_path,
                                 ("ray",))
    assert run.returncode == 6
    assert run.stderr.strip().splitlines() == [
        "emotion-stream: error: --cluster needs Ray: pip install 'emotion-stream[cluster]' (from a clone: "
        "pip install '.[cluster]')"]


@pytest.mark.parametrize("address", ["ray://admin:se'cr3t@head.example:10001", "admin:se'cr3t@head.example:6379"])
def test_a_cluster_address_with_a_password_is_refused_without_showing_it(address: str, tmp_path: Path) -> None:
    """Ray would take the user and password for part of the host name and send them to DNS: refused first."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not read: the address is checked first")
    run = subprocess.run([str(Path(sys.executable).parent / "emotion-stream"), "process", "--cluster", address,
                          str(video), "--weights", "w.pt"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 6 and "cr3t" not in run.stderr + run.stdout and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(
        "***@head.example:" + address.rpartition(":")[2] + ": a Ray address is a host and port, with no user or "
        "password")
