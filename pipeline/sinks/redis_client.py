"""Redis clients of the contract's writers and readers: one server, or a Redis Cluster (contract 2).

A cluster client (redis-py's `RedisCluster`) learns the nodes from the one URL it is given and
sends each command to the node serving its key's hash slot. A command's keys must share a slot
there, so writers send one MULTI per slot and readers read per slot (`keys_by_slot`).
"""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

Client = redis.Redis | RedisCluster


def open_client(url: str, timeout_s: float, cluster: bool) -> Client:
    """A client for `url`; with `cluster`, a cluster client that connects now, to learn the slots of the nodes
    (redis.ConnectionError when none answers)."""
    if not cluster:
        return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return RedisCluster.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    except redis.exceptions.RedisClusterException as exc:
        raise redis.ConnectionError(str(exc)) from None


def is_cluster(client: Client) -> bool:
    """Whether `client` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def slot_of(key: str | bytes) -> int:
    """The hash slot of `key` (of its hash tag `{...}` when it has one)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


def keys_by_slot(keys: list[str]) -> list[list[str]]:
    """`keys` in groups of one hash slot each, in the order of their first key."""
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(slot_of(key), []).append(key)
    return list(groups.values())
