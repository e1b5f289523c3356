"""Connect to a Ray cluster and start one inference actor per GPU, or per `fleet.cpus_per_actor` cores."""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.core.config import PipelineConfig
from pipeline.core.errors import ClusterError, EmotionStreamError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 300.0
"""How long actors may take to be placed and load the model (an export on first use included)."""


def import_ray() -> ModuleType:
    """The `ray` module; ClusterError naming the extra when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray: pip install 'emotion-stream[cluster]' (from a clone: "
                           "pip install '.[cluster]')") from None
    return ray


def connect(address: str) -> ModuleType:
    """Join the cluster at `address` (`ray://host:10001`, `auto`, `host:port` of a head's GCS, or `local` to start
    Ray in this process); ClusterError in one line when nothing answers there, or when it holds a user or password
    (Ray would take them for part of the host name, and send them to DNS)."""
    scheme, _, rest = address.rpartition("://")
    if "@" in rest:
        shown = f"{scheme + '://' if scheme else ''}***@{rest.rpartition('@')[2]}"
        raise ClusterError(f"cluster address {shown}: a Ray address is a host and port, with no user or password")
    ray = import_ray()
    if ray.is_initialized():
        return ray
    _probe(os.environ.get("RAY_ADDRESS", "") if address == "auto" else address)
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        if address == "local":
            ray.init(include_dashboard=False, configure_logging=False, log_to_driver=True)
        else:
            ray.init(address=address, configure_logging=False, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"cannot join the Ray cluster at {address}: {first}") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)  # ray.init makes SIGTERM exit 15; the command's own stays
    return ray


def _probe(address: str) -> None:
    """Refuse at once a `host:port` (or `ray://host:port`) where nothing listens: Ray itself retries for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # `local`, `auto` without RAY_ADDRESS, or a form Ray explains itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"cannot join the Ray cluster at {address}: nothing answers there ({exc})") from None


@dataclass(frozen=True)
class ActorSlot:
    """Where one inference actor goes: a node, and the share of it the actor reserves."""

    node_id: str
    node: str
    """The actor's place as people read it: its node's address and the start of the node's id, then `#n` when the
    node holds several actors."""
    num_cpus: int
    num_gpus: int


def plan_actors(nodes: list[dict[str, Any]], cpus_per_actor: int) -> list[ActorSlot]:
    """One slot per GPU of each alive node; CPU-only nodes one per `cpus_per_actor` cores (at least one when the
    node has a core); nodes without cores or GPUs (a head kept free for drivers) get none."""
    slots: list[ActorSlot] = []
    for node in nodes:
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        label = f"{node.get('NodeManagerAddress', '?')}/{node['NodeID'][:8]}"
        if gpus:
            count, cpus_each, gpus_each = gpus, max(1, min(cpus_per_actor, cpus // gpus)) if cpus else 0, 1
        elif cpus:
            count, cpus_each, gpus_each = max(1, cpus // cpus_per_actor), min(cpus, cpus_per_actor), 0
        else:
            continue
        slots += [ActorSlot(node["NodeID"], f"{label}#{number + 1}" if count > 1 else label, cpus_each, gpus_each)
                  for number in range(count)]
    return slots


def actor_config(config: PipelineConfig, slot: ActorSlot) -> PipelineConfig:
    """The configuration an actor runs: its one device, paths made absolute (actors run elsewhere), decoding
    sized to its cores, no metrics port (the controller gathers the metrics)."""
    config = copy.deepcopy(config)
    config.model.device = "cuda:0" if slot.num_gpus else "cpu"  # Ray shows a GPU actor only its own GPU
    if config.model.weights:
        config.model.weights = str(Path(config.model.weights).resolve())
    config.output.dir = str(Path(config.output.dir).resolve())
    config.redis.spill_dir = str(Path(config.redis.spill_dir).resolve())
    if not config.source.decode_processes:
        config.source.decode_processes = max(1, min(8, slot.num_cpus // 2))
    config.metrics.port = None
    return config


@dataclass
class FleetActor:
    """A started inference actor and where it runs."""

    handle: Any
    slot: ActorSlot


def start_actors(ray: ModuleType, config: PipelineConfig, job: str) -> list[FleetActor]:
    """Start one actor per planned slot and wait until each has loaded the model; a model or configuration
    error in an actor is raised here as it would be on one machine."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from pipeline.fleet.inference_actor import InferenceActor

    slots = plan_actors(ray.nodes(), config.fleet.cpus_per_actor)
    if not slots:
        raise ClusterError("the Ray cluster has no node with a CPU or GPU for an inference actor")
    remote = ray.remote(InferenceActor)
    actors = [FleetActor(remote.options(
        num_cpus=slot.num_cpus, num_gpus=slot.num_gpus, max_concurrency=32, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=False),
    ).remote(actor_config(config, slot), job, slot.node), slot) for slot in slots]
    ready = [actor.handle.ready.remote() for actor in actors]
    try:
        descriptions = ray.get(ready, timeout=READY_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"the inference actors were not ready within {READY_TIMEOUT_S:g}s (placed and the "
                           "model loaded); see `ray status`") from None
    except ray.exceptions.RayError as exc:
        raise user_error(exc) from None
    for actor, description in zip(actors, descriptions):
        log.info("inference actor on %s: %s", actor.slot.node, description)
    return actors


def user_error(exc: BaseException) -> BaseException:
    """The user-facing error an actor raised (a model or Redis problem), else a ClusterError naming it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EmotionStreamError):
        return cause
    return ClusterError(f"an inference actor failed: {cause or exc}".splitlines()[0])


def lost(ray: ModuleType, exc: BaseException) -> bool:
    """True when `exc` says the actor (or its node) is gone, rather than that the work failed."""
    return isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                            ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError))

