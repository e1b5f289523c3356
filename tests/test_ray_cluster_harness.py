"""The fleet test harness: a two-node Ray cluster, Redis and an RTSP camera in a private network
namespace where every address is loopback, and nothing left running afterwards."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.netns import (
    namespace_unavailable,
    processes_naming,
    run_scenario,
    scenario_command,
    start_in_namespace,
    stop_namespace,
)

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed (pip install 'ray[default]')", allow_module_level=True)
if reason := namespace_unavailable():
    pytest.skip(reason, allow_module_level=True)

import psutil  # noqa: E402  (installed with ray)

SCENARIOS = "tests.fleet_scenarios"


def test_two_nodes_on_loopback_and_node_loss_reschedules_on_the_head() -> None:
    outcome = run_scenario(SCENARIOS, ["harness"], timeout=300)
    result = outcome.result
    assert outcome.run.returncode == 0, outcome.run.stderr[-4000:]
    assert result["redis_ping"] is True
    assert result["node_addresses"] == ["127.0.0.1"]
    assert result["address"].startswith("127.0.0.1:") and result["ray_address_env"] == result["address"]
    head, node2 = result["node_ids"]["head"], result["node_ids"]["node2"]
    assert head != node2
    assert result["on_head"] == {"node_id": head, "ip": "127.0.0.1"}
    assert result["on_node2"] == {"node_id": node2, "ip": "127.0.0.1"}
    # A worker on node 2 read the namespace's RTSP camera and wrote to the namespace's Redis.
    assert result["camera_frame"] == {"node_id": node2, "size": [160, 96]}
    assert result["frames_in_redis"] == 1
    # Killing node 2 killed its raylet, agents and the worker running the task; Ray saw it die and
    # ran the task again on the head.
    assert result["node2_process_count"] >= 3
    assert result["node2_pids_alive"] == []
    assert result["node2_alive_after_kill"] is False
    assert result["started_on"] == node2 and result["retried_on"] == head
    assert result["leftover_processes"] == [] and result["ray_temp_dir_removed"] is True
    assert outcome.stray_processes == []


def test_killing_the_namespace_mid_run_leaves_no_process() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="netns-", dir="/tmp"))
    command = scenario_command(SCENARIOS, workdir / "result.json", workdir, ["hang"])
    process = start_in_namespace(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        up = _wait_for_file(workdir / "up.json", process, timeout=240)
        namespace = _pid_namespace(psutil.Process(process.pid).children()[0].pid)
        running = [line for line in up["processes"] if "raylet" in line or "redis-server" in line]
        assert len(running) >= 3  # two raylets and redis-server ran when it was killed
        assert len(_members(namespace)) >= len(up["processes"])
        stop_namespace(process)  # what run_scenario does on timeout
        assert _members(namespace) == []
        assert processes_naming(str(workdir)) == []
    finally:
        if process.poll() is None:
            stop_namespace(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_file(path: Path, process: subprocess.Popen, timeout: float) -> dict:
    """The JSON at `path` once the process has written it."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"scenario ended early: {process.stderr.read()[-4000:]}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.2)
    return json.loads(path.read_text())


def _pid_namespace(pid: int) -> str:
    """The pid namespace a process is in (e.g. 'pid:[4026532301]')."""
    return os.readlink(f"/proc/{pid}/ns/pid")


def _members(namespace: str) -> list[int]:
    """The processes of this machine in pid namespace `namespace`."""
    members = []
    for pid in psutil.pids():
        try:
            if _pid_namespace(pid) == namespace:
                members.append(pid)
        except OSError:
            continue
    return members
