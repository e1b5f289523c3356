"""A two-node Ray cluster on one machine for fleet tests (run it inside tests/netns.py's namespace).

The head and a second node are separate `ray start` runs on 127.0.0.1; the second node carries the
custom resource `node2` so a test can place work on it. `kill_second_node()` SIGKILLs every process
of that node at once, as a machine that loses power would, and waits until Ray marks it dead.
Stopping kills each node's processes by pid: never `ray stop`, which kills every Ray process on the
machine it can see (other tests' clusters under pytest-xdist when run outside a pid namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipeline.sinks.redis_server import free_port

NODE2_RESOURCE = "node2"
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"  # the venv's, as PATH may lack it
OBJECT_STORE_BYTES = 100_000_000  # Ray's minimum is 75 MB; the default (30% of RAM) is far too much here
# Set for the cluster's lifetime, for `ray start` and every driver started meanwhile:
# - the head's GCS probes each raylet every 500 ms and declares it dead after 3 missed probes (defaults:
#   3 s and 5), so a killed node is reported dead in a few seconds, not half a minute;
# - token authentication off: Ray 2.60 turns it on by itself when ~/.ray/auth_token exists (any local
#   `ray.init()` writes one), and then a second node or a driver without the token is refused.
CLUSTER_ENVIRONMENT = {
    "RAY_health_check_initial_delay_ms": "500",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_AUTH_MODE": "disabled",
}


@dataclass
class RayNode:
    """One `ray start` run: the processes it left running (their children are found when killed)."""

    name: str
    node_manager_port: int
    pids: set[int] = field(default_factory=set)
    node_id: str = ""

    def processes(self) -> list[psutil.Process]:
        """The node's daemons and all their descendants (workers are children of the raylet)."""
        found: dict[int, psutil.Process] = {}
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                found.update({proc.pid: proc for proc in [root, *root.children(recursive=True)]})
            except psutil.NoSuchProcess:
                continue
        return list(found.values())


@dataclass(frozen=True)
class Timings:
    """Seconds taken by each phase, for the report (never asserted)."""

    head_start_s: float = 0.0
    node_start_s: float = 0.0
    ready_s: float = 0.0


class LocalRayCluster:
    """A head node and a second node (resource `node2`) on 127.0.0.1, their files under `temp_dir`.

    `address` is the GCS address for `ray.init(address=...)` / `--cluster`; inside the context
    RAY_ADDRESS is set to it, so `--cluster auto` and `ray.init("auto")` find this cluster.
    `client_address` is the `ray://` address of the head's Ray Client server. Keep `temp_dir` short:
    Ray's unix socket paths under it must fit in 107 bytes.
    """

    def __init__(self, temp_dir: Path, head_cpus: int = 1, node_cpus: int = 1) -> None:
        self.temp_dir = temp_dir
        self.head_cpus = head_cpus
        self.node_cpus = node_cpus
        self.port = free_port()
        self.client_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self.head = RayNode("head", free_port())
        self.node2 = RayNode("node2", free_port())
        self.timings = Timings()
        self._saved_environment: dict[str, str | None] = {}

    def start(self) -> LocalRayCluster:
        """Start both nodes and connect this process as a driver; returns once both are alive.
        On failure everything started is killed before the error propagates."""
        self._saved_environment = _apply_environment({**CLUSTER_ENVIRONMENT, "RAY_ADDRESS": self.address})
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        import ray

        began = time.monotonic()
        self._start_node(self.head, ["--head", "--port", str(self.port), "--ray-client-server-port",
                                     str(self.client_port), "--include-dashboard", "false",
                                     "--temp-dir", str(self.temp_dir), "--num-cpus", str(self.head_cpus)])
        head_started = time.monotonic()
        self._start_node(self.node2, ["--address", self.address, "--num-cpus", str(self.node_cpus),
                                      "--resources", json.dumps({NODE2_RESOURCE: 1})])
        node_started = time.monotonic()
        ray.init(address=self.address, logging_level="warning", log_to_driver=False)
        self._wait_for(lambda nodes: sum(node["Alive"] for node in nodes) == 2, "both nodes alive")
        for node in ray.nodes():
            target = self.node2 if NODE2_RESOURCE in node["Resources"] else self.head
            target.node_id = node["NodeID"]
        self.timings = Timings(head_started - began, node_started - head_started, time.monotonic() - began)

    def _start_node(self, node: RayNode, args: list[str]) -> None:
        """`ray start` one node; remembers the daemons it left (they outlive `ray start` itself)."""
        before = set(psutil.pids())
        command = [RAY, "start", "--node-ip-address", "127.0.0.1", "--node-manager-port",
                   str(node.node_manager_port), "--object-store-memory", str(OBJECT_STORE_BYTES),
                   "--disable-usage-stats", *args]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        others = {proc.pid for other in (self.head, self.node2) if other is not node for proc in other.processes()}
        node.pids = set(psutil.pids()) - before - others
        if done.returncode != 0:
            raise RuntimeError(f"ray start ({node.name}) failed: {done.stderr.strip()[-2000:]}")

    def nodes(self) -> list[dict]:
        """Ray's view of the cluster's nodes (`ray.nodes()`)."""
        import ray

        return ray.nodes()

    def node_alive(self, node: RayNode) -> bool:
        """Whether Ray reports `node` alive."""
        return _alive(self.nodes(), node)

    def _wait_for(self, condition: Callable[[list[dict]], bool], what: str, timeout: float = 60.0) -> float:
        """Poll `ray.nodes()` until `condition(nodes)`; returns the seconds waited."""
        began = time.monotonic()
        while not condition(self.nodes()):
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"Ray cluster: no {what} after {timeout:.0f} s: {self.nodes()}")
            time.sleep(0.1)
        return time.monotonic() - began

    def kill_second_node(self) -> float:
        """SIGKILL the second node's raylet, workers and daemons at once; returns the seconds until
        Ray reported the node dead."""
        _kill(self.node2.processes())
        return self._wait_for(lambda nodes: not _alive(nodes, self.node2), "death of node2")

    def stop(self) -> None:
        """Disconnect, kill both nodes' processes (second node first) and delete `temp_dir`."""
        import ray

        ray.shutdown()
        _kill(self.node2.processes())
        _kill(self.head.processes())
        _apply_environment(self._saved_environment)
        self._saved_environment = {}
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _alive(nodes: list[dict], node: RayNode) -> bool:
    """Whether `node` is alive in `ray.nodes()` output."""
    return any(entry["NodeID"] == node.node_id and entry["Alive"] for entry in nodes)


def _apply_environment(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set (None: unset) environment variables; returns their previous values."""
    previous = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return previous


def _kill(processes: list[psutil.Process]) -> None:
    """SIGKILL all `processes` and wait until they are gone (reaped by their parent or namespace init)."""
    for proc in processes:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(processes, timeout=10)
