"""Where the fleet puts its actors and cameras: pure functions, checked on the shapes Ray reports."""

from __future__ import annotations

from pipeline.core.config import SourceSpec
from pipeline.fleet.placement import place_cameras
from pipeline.fleet.ray_cluster import ActorSlot, plan_actors


def _node(node_id: str, cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    resources = {"CPU": cpus, "memory": 1e9} | ({"GPU": gpus} if gpus else {})
    return {"NodeID": node_id, "Alive": alive, "NodeManagerAddress": "10.0.0.1", "Resources": resources}


def _cameras(count: int) -> list[SourceSpec]:
    return [SourceSpec(id=f"cam{number + 1}", uri=f"rtsp://10.0.0.9/cam{number + 1}") for number in range(count)]


def test_one_actor_per_gpu_and_per_n_cores_on_cpu_nodes() -> None:
    nodes = [_node("a" * 56, 16, gpus=2), _node("b" * 56, 9), _node("c" * 56, 2), _node("d" * 56, 0),
             _node("e" * 56, 64, alive=False)]
    slots = plan_actors(nodes, cpus_per_actor=4)
    assert slots == [ActorSlot("a" * 56, "10.0.0.1/aaaaaaaa#1", 4, 1), ActorSlot("a" * 56, "10.0.0.1/aaaaaaaa#2", 4, 1),
                     ActorSlot("b" * 56, "10.0.0.1/bbbbbbbb#1", 4, 0), ActorSlot("b" * 56, "10.0.0.1/bbbbbbbb#2", 4, 0),
                     ActorSlot("c" * 56, "10.0.0.1/cccccccc", 2, 0)]  # one actor on a node: the node's own label


def test_gpu_actors_share_the_cores_of_their_node() -> None:
    assert [slot.num_cpus for slot in plan_actors([_node("a" * 56, 4, gpus=8)], cpus_per_actor=4)] == [1] * 8
    assert [slot.num_cpus for slot in plan_actors([_node("a" * 56, 0, gpus=1)], cpus_per_actor=4)] == [0]


def test_cameras_go_to_the_least_loaded_actor_with_room() -> None:
    placement = place_cameras(_cameras(5), {0: 0, 1: 1, 2: 0}, capacity=2)
    assert {actor: [spec.id for spec in specs] for actor, specs in placement.assigned.items()} == \
        {0: ["cam1", "cam3"], 2: ["cam2", "cam5"], 1: ["cam4"]}
    assert placement.unplaced == []


def test_cameras_beyond_capacity_are_left_unplaced_and_without_a_cap_spread_evenly() -> None:
    full = place_cameras(_cameras(3), {0: 2, 1: 1}, capacity=2)
    assert [spec.id for spec in full.assigned[1]] == ["cam1"] and [spec.id for spec in full.unplaced] == ["cam2", "cam3"]
    spread = place_cameras(_cameras(7), {0: 0, 1: 0, 2: 0}, capacity=None)
    assert sorted(len(specs) for specs in spread.assigned.values()) == [2, 2, 3]
    assert place_cameras(_cameras(2), {}, capacity=None).unplaced == _cameras(2)
