"""Contract v2 on a real Redis Cluster (three redis-server primaries): slots, process, re-runs, subscribe.

Every key of a source shares one hash slot, so the writer sends one MULTI per slot and the
readers read slot by slot; sources on different nodes are written and read alike, and a
node that is away holds up only its own sources. Contract 1 on a cluster is refused.
"""

import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from pipeline.cli import main
from pipeline.core.config import load_config
from pipeline.core.contract import RedisKeys
from pipeline.core.errors import ConfigError, SinkError
from pipeline.core.states import SourceState
from pipeline.faces.events import FaceEvent
from pipeline.sinks.payload import EventRecord
from pipeline.sinks.redis_server import LocalRedisCluster
from pipeline.sinks.redis_sink import RedisSink, connect
from pipeline.sinks.redis_writer import RedisWriter
from pipeline.sinks.subscriber import follow_events_pubsub
from pipeline.sinks.write_budget import measure

KEYS = RedisKeys(version=2)
CANDIDATES = [f"cam{number}" for number in range(1, 40)]


@pytest.fixture(scope="module")
def cluster() -> LocalRedisCluster:
    """Three primaries that keep their data across a restart and do not declare a briefly stopped node failed
    (so the others go on serving)."""
    with LocalRedisCluster(persist=True, extra_args=("--cluster-node-timeout", "60000")) as started:
        yield started


@pytest.fixture(scope="module")
def client(cluster: LocalRedisCluster) -> RedisCluster:
    return RedisCluster.from_url(cluster.url)


def _one_per_node(client: RedisCluster) -> dict[str, int]:
    """A source id on each node (id to the node's port)."""
    chosen: dict[int, str] = {}
    for source_id in CANDIDATES:
        chosen.setdefault(client.get_node_from_key(KEYS.frames(source_id)).port, source_id)
    assert len(chosen) == 3
    return {source_id: port for port, source_id in chosen.items()}


def _cli(*args: str, url: str) -> list[str]:
    return [*args, "--redis", url, "--contract", "2", "--redis-cluster"]


@pytest.fixture(scope="module")
def processed(cluster: LocalRedisCluster, client: RedisCluster, scripted_video: tuple, weights: Path, imgsz: int,
              tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`process` of three copies of the scripted video, one per node, into the cluster."""
    video, truth = scripted_video
    folder = tmp_path_factory.mktemp("cluster-videos")
    sources = _one_per_node(client)
    for source_id in sources:
        shutil.copy(video, folder / f"{source_id}.mp4")
    out = tmp_path_factory.mktemp("cluster-out")
    command = _cli("process", str(folder), "--weights", str(weights), "--imgsz", str(imgsz), "--out", str(out),
                   "--cpu-backend", "pytorch", "--quiet", url=cluster.url)
    assert main(command) == 0
    return {"sources": sources, "frames": len(truth), "command": command}


def test_every_key_of_a_source_shares_one_slot(client: RedisCluster) -> None:
    for source_id in ("cam1", "interview-042", "a.b_c"):
        keys = [KEYS.frames(source_id), KEYS.events(source_id), KEYS.claim(source_id), KEYS.dead_letters(source_id)]
        assert keys == [f"emotion:{{{source_id}}}:{kind}" for kind in ("frames", "events", "claim", "dead")]
        slots = {client.cluster_keyslot(key) for key in keys}  # CLUSTER KEYSLOT, asked of the server
        assert len(slots) == 1
        assert all(RedisKeys.source_of(key) == source_id for key in keys)
        assert RedisKeys.source_of(RedisKeys().frames(source_id)) == source_id
    assert (KEYS.sources, KEYS.channel) == ("emotion:sources", "emotion:events")


def test_process_writes_every_frame_once_on_every_node_and_a_rerun_adds_nothing(
    processed: dict, client: RedisCluster, capsys: pytest.CaptureFixture
) -> None:
    for source_id, port in processed["sources"].items():
        assert client.get_node_from_key(KEYS.frames(source_id)).port == port
        entries = client.xrange(KEYS.frames(source_id))
        assert [int(fields[b"frame"]) for _id, fields in entries] == list(range(processed["frames"]))
        assert {fields[b"v"] for _id, fields in entries} == {b"2"}
        assert client.xlen(KEYS.events(source_id)) > 0
        assert json.loads(client.hget(KEYS.sources, source_id))["state"] == SourceState.ENDED.value
        assert not client.exists(KEYS.claim(source_id))  # released at the end
    before = {source_id: client.xrange(KEYS.frames(source_id)) for source_id in processed["sources"]}
    events = {source_id: client.xlen(KEYS.events(source_id)) for source_id in processed["sources"]}
    capsys.readouterr()
    assert main(processed["command"]) == 0
    out = capsys.readouterr().out
    for source_id in processed["sources"]:
        assert client.xrange(KEYS.frames(source_id)) == before[source_id]
        assert client.xlen(KEYS.events(source_id)) == events[source_id]
        assert f"{KEYS.frames(source_id)} holds this run already" in out


def test_subscribe_reads_v2_frames_and_every_source_s_events(processed: dict, cluster: LocalRedisCluster,
                                                             capsys: pytest.CaptureFixture) -> None:
    source_id = next(iter(processed["sources"]))
    capsys.readouterr()
    assert main(_cli("subscribe", source_id, "--from-start", "--until-ended", "--json", url=cluster.url)) == 0
    frames = [json.loads(line)["frame"] for line in capsys.readouterr().out.splitlines()]
    assert frames == list(range(processed["frames"]))
    for mode in (["--from-start"], ["--group", "readers"]):
        assert main(_cli("subscribe", "--events", "--all", "--until-ended", "--json", *mode, url=cluster.url)) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {event["source"] for event in events} == set(processed["sources"])
        assert {event["v"] for event in events} == {"2"}
        ended = [event["source"] for event in events if event.get("state") == SourceState.ENDED.value]
        assert sorted(ended) == sorted(processed["sources"])


def test_pubsub_messages_of_sources_on_every_node_reach_a_cluster_subscriber(
    cluster: LocalRedisCluster, client: RedisCluster, tmp_path: Path
) -> None:
    sources = _one_per_node(client)
    reader = connect(cluster.url, cluster=True)
    received: list[dict] = []
    events = follow_events_pubsub(reader, KEYS, None, lambda skipped: None)
    listening = threading.Thread(target=lambda: received.extend(next(events) for _ in sources), daemon=True)
    listening.start()
    nodes = [redis.Redis.from_url(server.url) for server in cluster.servers]
    for _ in range(300):  # until the subscription is in place (on one node: PUBLISH reaches every node's)
        if sum(node.pubsub_numsub(KEYS.channel)[0][1] for node in nodes):
            break
        time.sleep(0.05)
    writer = RedisWriter(cluster.url, spill_path=tmp_path / "spill.jsonl", cluster=True)
    for source_id in sources:
        live = EventRecord("1-0", FaceEvent("source_status", source_id, 0.0, time.time(), {"state": "live", "reason": ""}))
        RedisSink(writer, source_id, "model", KEYS, 1000, "file.mp4").status(SourceState.LIVE, "", live)
    assert writer.close() == 0
    listening.join(timeout=30)
    assert sorted(event["source"] for event in received) == sorted(sources)
    assert {(event["v"], event["state"]) for event in received} == {("2", "live")}


def test_while_a_node_is_away_the_others_are_written_and_its_entries_land_once_when_it_is_back(
    cluster: LocalRedisCluster, client: RedisCluster, tmp_path: Path
) -> None:
    sources = _one_per_node(client)
    away, *others = sources
    for source_id in sources:
        client.delete(KEYS.frames(source_id))
    writer = RedisWriter(cluster.url, timeout_s=1.0, spill_path=tmp_path / "spill.jsonl", batch=7, cluster=True)
    node = next(server for server in cluster.servers if server.port == sources[away])

    def frames(first: int) -> list[list]:
        return [["xadd", KEYS.frames(source_id), f"{first + n}-0", {"v": "2", "frame": str(first + n)}, 1000, None]
                for n in range(5) for source_id in sources]

    writer.submit(frames(1))
    assert writer.flush(10)
    node.kill()
    try:
        writer.submit(frames(6))
        for _ in range(600):
            if all(client.xlen(KEYS.frames(source_id)) == 10 for source_id in others):
                break
            time.sleep(0.1)
        assert [client.xlen(KEYS.frames(source_id)) for source_id in others] == [10, 10]
        assert writer.pending == 5 and set(writer.unwritten()) == {KEYS.frames(away)}
    finally:
        node.start()
    assert writer.flush(30)
    writer.close()
    for source_id in sources:
        ids = [entry_id.decode() for entry_id, _fields in client.xrange(KEYS.frames(source_id))]
        assert ids == [f"{n}-0" for n in range(1, 11)]


def test_contract_1_on_a_cluster_is_refused_in_one_line(cluster: LocalRedisCluster, scripted_video: tuple,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("redis:\n  cluster: true\n")
    with pytest.raises(ConfigError, match=r"^redis.cluster: true needs redis.contract: 2 .*got redis.contract: 1$"):
        load_config(config)
    capsys.readouterr()
    for command in (["process", str(scripted_video[0]), "--redis", cluster.url, "--redis-cluster"],
                    ["subscribe", "cam1", "--redis", cluster.url, "--redis-cluster"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "redis.cluster" in err[0] and "redis.contract" in err[0]


def test_a_cluster_node_needs_the_cluster_client_and_a_plain_server_refuses_it(
    cluster: LocalRedisCluster, redis_url: str
) -> None:
    with pytest.raises(SinkError, match="is a Redis Cluster node: set redis.cluster: true and redis.contract: 2"):
        connect(cluster.url)
    with pytest.raises(SinkError, match="is not a Redis Cluster node"):
        connect(redis_url, cluster=True)
    with pytest.raises(ConfigError, match="has only database 0"):
        connect(cluster.url.replace("/0", "/1"), cluster=True)
    assert isinstance(connect(cluster.url, cluster=True), RedisCluster)
    assert isinstance(connect(redis_url), redis.Redis)


@pytest.mark.parametrize(("yaml", "message"), [
    ("redis:\n  contract: 3\n", "'redis.contract' must be one of 1, 2, got 3"),
    ("redis:\n  contract: 2\n  prefix: 'a{b}'\n", "redis.prefix 'a{b}' must not hold { or } with redis.contract: 2"),
    ("redis:\n  cluster: maybe\n", "'redis.cluster' must be bool, got 'maybe'"),
])
def test_bad_contract_settings_are_one_line_config_errors(tmp_path: Path, yaml: str, message: str) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(config)


def test_the_write_budget_writes_through_the_cluster_writer_and_cleans_up(cluster: LocalRedisCluster,
                                                                          client: RedisCluster) -> None:
    budget = measure(cluster.url, frames=240, sources=3, cluster=True, contract=2)
    assert budget.entries == 240 and budget.per_second > 0 and budget.redis_cpu_s is None
    assert 300 < budget.entry_bytes < 1000  # two faces with seven scores each
    assert not list(client.scan_iter(match="emotion-budget*"))
