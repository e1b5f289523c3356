"""Fleet scenarios: each runs inside tests/netns.py's namespace and writes its findings as JSON.

    python -m tests.fleet_scenarios --result OUT.json --workdir DIR SCENARIO

Tests call them through `tests.netns.run_scenario` and assert on the JSON; the scenario itself
only measures and reports, so a failed expectation shows as a clear assertion in the test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import psutil
import ray
import redis
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pipeline.sinks.redis_server import LocalRedisServer
from tests.ray_cluster import NODE2_RESOURCE, LocalRayCluster, RayNode
from tests.rtsp import RtspServer
from tests.videos import gradient_frames, write_video

STARTED_KEY = "scenario:started-on-node2"


@ray.remote
def node_of_task() -> dict:
    """Where this task ran: Ray's node id and the IP Ray gave the node."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address()}


@ray.remote
def grab_camera_frame(rtsp_url: str, redis_url: str) -> dict:
    """Decode one frame of the RTSP camera and add its size to a Redis stream."""
    import av

    with av.open(rtsp_url, options={"rtsp_transport": "tcp"}, timeout=10) as container:
        frame = next(container.decode(video=0))
    redis.Redis.from_url(redis_url).xadd("scenario:frames", {"width": frame.width, "height": frame.height})
    return {"node_id": ray.get_runtime_context().get_node_id(), "size": [frame.width, frame.height]}


@ray.remote(max_retries=3)
def hang_on_node2(redis_url: str, node2_id: str) -> str:
    """On node 2: say so in Redis and hang (until the node dies). Elsewhere: return the node id."""
    node_id = ray.get_runtime_context().get_node_id()
    if node_id == node2_id:
        redis.Redis.from_url(redis_url).set(STARTED_KEY, node_id)
        time.sleep(600)
    return node_id


def namespace_processes() -> list[str]:
    """Command lines of the processes in this namespace other than its init and this process."""
    mine = {1, os.getpid()}
    return [" ".join(proc.info["cmdline"] or [proc.info["name"]])[:160]
            for proc in psutil.process_iter(["cmdline", "name"]) if proc.pid not in mine]


def wait_for_key(client: redis.Redis, key: str, timeout: float = 60.0) -> None:
    """Poll until `key` exists in Redis."""
    deadline = time.monotonic() + timeout
    while not client.exists(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} never set")
        time.sleep(0.1)


def harness(workdir: Path) -> dict:
    """Redis, an RTSP camera and two Ray nodes in the namespace; tasks on each node; node 2 killed."""
    video = write_video(workdir / "cam.mp4", gradient_frames(50))
    result: dict = {}
    with LocalRedisServer() as server, RtspServer({"cam": video}) as camera:
        client = redis.Redis.from_url(server.url)
        result["redis_ping"] = client.ping()
        began = time.monotonic()
        with LocalRayCluster(workdir / "ray") as cluster:
            result["timings"] = asdict(cluster.timings)
            result["ray_address_env"] = os.environ.get("RAY_ADDRESS")
            result["address"] = cluster.address
            result["node_ids"] = {"head": cluster.head.node_id, "node2": cluster.node2.node_id}
            result["node_addresses"] = sorted({node["NodeManagerAddress"] for node in cluster.nodes()})
            head_only = NodeAffinitySchedulingStrategy(cluster.head.node_id, soft=False)
            result["on_head"] = ray.get(node_of_task.options(scheduling_strategy=head_only).remote())
            result["on_node2"] = ray.get(node_of_task.options(resources={NODE2_RESOURCE: 1}).remote())
            result["camera_frame"] = ray.get(grab_camera_frame.options(resources={NODE2_RESOURCE: 1})
                                             .remote(camera.url("cam"), server.url))
            result["frames_in_redis"] = client.xlen("scenario:frames")
            prefer_node2 = NodeAffinitySchedulingStrategy(cluster.node2.node_id, soft=True)
            survivor = hang_on_node2.options(scheduling_strategy=prefer_node2).remote(server.url,
                                                                                      cluster.node2.node_id)
            wait_for_key(client, STARTED_KEY)
            node2_pids = [proc.pid for proc in cluster.node2.processes()]
            result["node2_process_count"] = len(node2_pids)
            result["dead_after_s"] = cluster.kill_second_node()
            result["node2_pids_alive"] = [pid for pid in node2_pids if psutil.pid_exists(pid)]
            result["node2_alive_after_kill"] = cluster.node_alive(cluster.node2)
            result["retried_on"] = ray.get(survivor, timeout=120)
            result["started_on"] = client.get(STARTED_KEY).decode()
            stop_began = time.monotonic()
        result["stop_s"] = time.monotonic() - stop_began
        result["cluster_lifetime_s"] = time.monotonic() - began
    result["leftover_processes"] = namespace_processes()
    result["ray_temp_dir_removed"] = not (workdir / "ray").exists()
    return result


def hang(workdir: Path) -> dict:
    """Redis, an RTSP camera and two Ray nodes with a task running on node 2; reports that in the
    result file, then hangs until killed (tests kill the namespace, as a timeout does)."""
    video = write_video(workdir / "cam.mp4", gradient_frames(50))
    with LocalRedisServer() as server, RtspServer({"cam": video}), LocalRayCluster(workdir / "ray") as cluster:
        hang_on_node2.options(resources={NODE2_RESOURCE: 1}).remote(server.url, cluster.node2.node_id)
        wait_for_key(redis.Redis.from_url(server.url), STARTED_KEY)
        up = {"processes": namespace_processes()}
        (workdir / "up.json.part").write_text(json.dumps(up))
        (workdir / "up.json.part").rename(workdir / "up.json")
        time.sleep(3600)
    return up


WEIGHTS = Path(__file__).resolve().parent.parent / "training" / "assets" / "emotion-demo.pt"
ARCHIVE_FILES, ARCHIVE_FRAMES = 6, 400


def emotion_stream(*args: str, workdir: Path) -> subprocess.Popen:
    """The real command line, its output in `workdir`/cli.out and cli.err."""
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args],
                            stdout=(workdir / "cli.out").open("w"), stderr=(workdir / "cli.err").open("w"))


def cli_output(workdir: Path) -> dict:
    return {"stdout": (workdir / "cli.out").read_text()[-6000:], "stderr": (workdir / "cli.err").read_text()[-6000:]}


def statuses(client: redis.Redis) -> dict[str, dict]:
    """`emotion:sources`, parsed."""
    return {key.decode(): json.loads(value) for key, value in client.hgetall("emotion:sources").items()}


def node_label(cluster: LocalRayCluster, node: RayNode) -> str:
    """How the fleet names a node in a source's status."""
    return f"127.0.0.1/{node.node_id[:8]}"


def frame_indices(client: redis.Redis, source_id: str) -> list[int]:
    """The `frame` field of every entry of the source's frames stream, in stream order."""
    return [int(fields[b"frame"]) for _, fields in client.xrange(f"emotion:frames:{source_id}")]


def wait_until(check: Callable[[], bool], timeout: float, what: str, cli: subprocess.Popen, workdir: Path) -> float:
    """Poll `check` every 0.1 s while `cli` runs; the seconds it took. TimeoutError naming `what`, with the
    command's output, after `timeout` or when the command ended first."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout or cli.poll() is not None:
            cli.kill()
            raise TimeoutError(f"{what}: not within {timeout:g}s (command exit status {cli.wait()}): "
                               f"{cli_output(workdir)}")
        time.sleep(0.1)
    return time.monotonic() - began


def fleet_config(workdir: Path, fleet: str = "", extra: str = "", metrics: str = "") -> Path:
    """The fleet tests' configuration: the shipped demo model, one actor per node, and `extra` sections."""
    config = workdir / "fleet.yaml"
    config.write_text(f"model: {{weights: {WEIGHTS}, imgsz: 160}}\n"
                      f"fleet: {{cpus_per_actor: 1, lost_after_s: 5{fleet}}}\n"
                      f"metrics: {{log_interval_s: 2{metrics}}}\n{extra}")
    return config


def archive_node_loss(workdir: Path) -> dict:
    """`process --cluster auto` of 6 files on two nodes; node 2 killed while it writes; what Redis holds."""
    videos = workdir / "videos"
    videos.mkdir()
    for number in range(ARCHIVE_FILES):
        write_video(videos / f"talk{number + 1}.mp4", gradient_frames(ARCHIVE_FRAMES))
    result: dict = {}
    with LocalRedisServer() as server, LocalRayCluster(workdir / "ray") as cluster:
        client = redis.Redis.from_url(server.url)
        node2 = node_label(cluster, cluster.node2)
        cli = emotion_stream("process", "--cluster", "auto", str(videos), "--config", str(fleet_config(workdir)),
                             "--redis", server.url, "--out", str(workdir / "out"), "--quiet", workdir=workdir)

        def node2_writing() -> bool:
            return any(status.get("node") == node2 and status["frames"] >= 40 for status in statuses(client).values())

        wait_until(node2_writing, 240, "a file written from node 2", cli, workdir)
        result["on_node2_at_kill"] = {source: status["frames"] for source, status in statuses(client).items()
                                      if status.get("node") == node2 and status["state"] != "ended"}
        result["dead_after_s"] = cluster.kill_second_node()
        result["rc"] = cli.wait(timeout=400)
        result |= cli_output(workdir)
        result["frames"] = {f"talk{n + 1}": frame_indices(client, f"talk{n + 1}") for n in range(ARCHIVE_FILES)}
        result["final"] = statuses(client)
        result["head"] = node_label(cluster, cluster.head)
        result["node2"] = node2
    return result


CAMERAS = ("cam1", "cam2", "cam3")
CLIPS, CLIP_FRAMES = ("clip1", "clip2"), 50
METRICS_PORT = 9300
"""The controller's Prometheus endpoint (the namespace has its own ports)."""


def cameras_node_loss(workdir: Path) -> dict:
    """`serve --cluster auto` of 3 RTSP cameras and 2 short files on two nodes (placed in that order, least loaded
    first: one file on each node); the files end; node 2 killed; how soon its cameras write again from the head
    (its ended file must stay ended, not run again); then SIGTERM."""
    video = write_video(workdir / "cam.mp4", gradient_frames(250))
    clip = write_video(workdir / "clip.mp4", gradient_frames(CLIP_FRAMES))
    result: dict = {}
    with LocalRedisServer() as server, RtspServer({name: video for name in CAMERAS}) as rtsp, \
            LocalRayCluster(workdir / "ray") as cluster:
        client = redis.Redis.from_url(server.url)
        sources = "".join(f"  - {{id: {name}, uri: '{rtsp.url(name)}'}}\n" for name in CAMERAS) + \
            "".join(f"  - {{id: {name}, uri: '{clip}'}}\n" for name in CLIPS)
        config = fleet_config(workdir, ", cameras_per_actor: 4",
                              f"redis: {{url: '{server.url}'}}\noutput: {{dir: {workdir / 'out'}}}\nsources:\n{sources}",
                              f", port: {METRICS_PORT}")
        cli = emotion_stream("serve", "--cluster", "auto", "--config", str(config), workdir=workdir)
        head, node2 = node_label(cluster, cluster.head), node_label(cluster, cluster.node2)

        def all_live() -> bool:
            now = statuses(client)
            return all(now.get(name, {}).get("state") == "live" and now[name]["frames"] > 25 for name in CAMERAS) \
                and all(now.get(name, {}).get("state") == "ended" for name in CLIPS)

        result["live_after_s"] = wait_until(all_live, 240, "every camera live", cli, workdir)
        placed = {name: status["node"] for name, status in statuses(client).items()}
        result["placed"] = placed
        moved = [name for name, node in placed.items() if node == node2 and name in CAMERAS]
        killed_at_ms = int(time.time() * 1000)
        result["dead_after_s"] = cluster.kill_second_node()

        def writing_from_head_again(name: str) -> Callable[[], bool]:
            def check() -> bool:
                last = client.xrevrange(f"emotion:frames:{name}", count=1)
                newer = bool(last) and int(last[0][0].split(b"-")[0]) > killed_at_ms
                return newer and statuses(client)[name].get("node") == head
            return check

        result["continued_after_s"] = {name: result["dead_after_s"] + wait_until(writing_from_head_again(name), 60,
                                                                                  f"{name} written from the head",
                                                                                  cli, workdir)
                                       for name in moved}
        stayed = [name for name in CAMERAS if name not in moved]
        before = {name: client.xlen(f"emotion:frames:{name}") for name in stayed}
        time.sleep(3)
        result["stayed_grew"] = {name: client.xlen(f"emotion:frames:{name}") - before[name] for name in stayed}
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as response:
            result["prometheus_frames"] = {
                line.split('"')[1]: float(line.split()[-1]) for line in response.read().decode().splitlines()
                if line.startswith("emotion_frames_total{")}
        cli.send_signal(signal.SIGTERM)
        result["rc"] = cli.wait(timeout=120)
        result |= cli_output(workdir)
        result["final"] = statuses(client)
        result["clip_frames"] = {name: frame_indices(client, name) for name in CLIPS}
        result["head"], result["node2"] = head, node2
    return result


def local_cluster(workdir: Path) -> dict:
    """`process --cluster local` (Ray started in the command's process) of three files, one of whose ids holds
    another run's data; the same with weights that do not exist; `--cluster auto` where no cluster runs."""
    videos = workdir / "videos"
    videos.mkdir()
    for number in range(3):
        write_video(videos / f"clip{number + 1}.mp4", gradient_frames(60))
    result: dict = {}
    os.environ.pop("RAY_ADDRESS", None)
    with LocalRedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.xadd("emotion:frames:clip3", {"frame": "0"}, id="1-1")  # not this job's: clip3 alone is refused

        def run(*args: str) -> tuple[int, dict]:
            cli = emotion_stream("process", *args, str(videos), "--out", str(workdir / "out"), "--quiet",
                                 workdir=workdir)
            return cli.wait(timeout=400), cli_output(workdir)

        result["local_rc"], result["local"] = run("--cluster", "local", "--config", str(fleet_config(workdir)),
                                                  "--redis", server.url)
        result["frames"] = {f"clip{n + 1}": frame_indices(client, f"clip{n + 1}") for n in range(3)}
        result["missing_rc"], result["missing"] = run("--cluster", "local", "--weights", str(workdir / "none.pt"))
        result["auto_rc"], result["auto"] = run("--cluster", "auto", "--weights", str(WEIGHTS))
        result |= _interrupted_with_files_queued(workdir, server.url)
    return result


def _interrupted_with_files_queued(workdir: Path, redis_url: str) -> dict:
    """SIGINT to `process --cluster local` while one file runs and three wait their turn."""
    videos = workdir / "long"
    videos.mkdir()
    for number in range(4):
        write_video(videos / f"long{number + 1}.mp4", gradient_frames(ARCHIVE_FRAMES))
    client = redis.Redis.from_url(redis_url)
    cli = emotion_stream("process", "--cluster", "local", str(videos), "--redis", redis_url, "--quiet",
                         "--config", str(fleet_config(workdir, extra="batching: {open_files: 1}\n")),
                         "--out", str(workdir / "out"), workdir=workdir)
    wait_until(lambda: any(status["frames"] >= 20 for source, status in statuses(client).items()
                           if source.startswith("long")), 240,
               "a file being written", cli, workdir)
    cli.send_signal(signal.SIGINT)
    return {"interrupted_rc": cli.wait(timeout=120), "interrupted": cli_output(workdir),
            "interrupted_states": {source: status["state"] for source, status in statuses(client).items()
                                   if source.startswith("long")}}


SCENARIOS: dict[str, Callable[[Path], dict]] = {"harness": harness, "hang": hang, "local_cluster": local_cluster,
                                                 "archive_node_loss": archive_node_loss,
                                                 "cameras_node_loss": cameras_node_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON findings")
    parser.add_argument("--workdir", type=Path, required=True, help="a short, empty folder (Ray's sockets go under it)")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    args = parser.parse_args()
    args.result.write_text(json.dumps(SCENARIOS[args.scenario](args.workdir)))


if __name__ == "__main__":
    main()
