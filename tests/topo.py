"""Helpers that let a test look at its data the same way on one server and on a cluster."""
from __future__ import annotations

from typing import Any, List

import redis
from redis.cluster import RedisCluster


def is_cluster(r: Any) -> bool:
    return isinstance(r, RedisCluster)


def node_of(r: Any, key: Any) -> Any:
    """A plain client of the server that holds ``key``: ``r`` itself on one server,
    the primary serving ``key``'s slot on a cluster (server-wide commands such as
    INFO, CONFIG RESETSTAT and KEYS then see that set's node)."""
    if not is_cluster(r):
        return r
    node = r.get_node_from_key(key)
    return node.redis_connection


def total_keys(r: Any) -> int:
    """Keys in the database (every primary of a cluster)."""
    if not is_cluster(r):
        return int(r.dbsize())
    return sum(int(node.redis_connection.dbsize()) for node in r.get_primaries())


def all_keys(r: Any) -> List[bytes]:
    """Every key (of every primary), sorted."""
    if not is_cluster(r):
        return sorted(r.keys())
    found: List[bytes] = []
    for node in r.get_primaries():
        found.extend(node.redis_connection.keys())
    return sorted(found)


__all__ = ["is_cluster", "node_of", "total_keys", "all_keys", "redis"]
