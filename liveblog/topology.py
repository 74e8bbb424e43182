"""Where Redis is: the client for a URL, and which node holds which blog's log.

One Redis is one node (``STANDALONE``), and so is a Sentinel-managed primary with its replicas
(``redis+sentinel://``): its clients ask the sentinels where the primary is whenever they
connect, so after a failover they reconnect to the new one. A Redis Cluster (``redis+cluster://``) has a primary per
shard; a blog's keys share a hash slot (:mod:`liveblog.keys`), so each blog's log lives on one
node, which can change with a failover or resharding.
"""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import AskError, ClusterDownError, TryAgainError

from . import keys
from .config import SENTINEL_SCHEME, sentinel_url
from .logreader import LogReader

#: Connections per process. When all are busy (a thousand readers joining at once), callers
#: wait up to POOL_WAIT seconds for one instead of failing.
POOL_SIZE = 256
POOL_WAIT = 5.0
#: The node name of a single (non-cluster) Redis.
STANDALONE = "redis"


CLUSTER_SCHEME = "redis+cluster://"
#: What a cluster node answers while its slots move (MOVED/ASK, CLUSTERDOWN, TRYAGAIN).
LAYOUT_CHANGED = (AskError, ClusterDownError, TryAgainError)
_CONNECT_TIMEOUT, _TIMEOUT = 2.0, 5.0


class _SentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """A pool of connections to the primary the sentinels name that, like the standalone pool,
    waits for a free connection rather than failing when all are busy."""


async def connect(url: str) -> redis.Redis | redis.RedisCluster:
    """A client pool for ``url`` that fails fast when Redis is away (callers turn that into 503).

    ``redis+cluster://host:port`` connects to a Redis Cluster through any of its nodes; the
    cluster's layout is read now, so that the hub knows which nodes to tail.
    ``redis+sentinel://host:port,…/service`` connects to the primary the sentinels name for
    ``service``, asking them again on every new connection (and when a primary answers that it
    is read-only: it was demoted). :func:`close` the client, which closes the sentinels' too.
    """
    if url.startswith(SENTINEL_SCHEME):
        where = sentinel_url(url)
        timeouts = {"socket_connect_timeout": _CONNECT_TIMEOUT, "socket_timeout": _TIMEOUT}
        sentinel = Sentinel(
            where.sentinels,
            sentinel_kwargs=timeouts,
            db=where.db,
            username=where.username,
            password=where.password,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            health_check_interval=30,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_TIMEOUT,
        )
        client: redis.Redis = sentinel.master_for(
            where.service, connection_pool_class=_SentinelPool, max_connections=POOL_SIZE, timeout=POOL_WAIT
        )
        return client
    if url.startswith(CLUSTER_SCHEME):
        cluster = redis.RedisCluster.from_url(
            "redis://" + url.removeprefix(CLUSTER_SCHEME),
            max_connections=POOL_SIZE,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_TIMEOUT,
        )
        return await cluster.initialize()
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        health_check_interval=30,
        socket_connect_timeout=_CONNECT_TIMEOUT,
        socket_timeout=_TIMEOUT,
    )
    return redis.Redis(connection_pool=pool)


async def close(client: redis.Redis | redis.RedisCluster) -> None:
    """Close a client from :func:`connect`, and for Sentinel the connections to the sentinels."""
    await client.aclose()
    pool = client.connection_pool if isinstance(client, redis.Redis) else None
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


class Topology:
    """The nodes of ``client`` that hold logs, and a dedicated reader for each.

    With ``min_replicas``, the readers hand out only events that many replicas have confirmed
    within ``wait_ms`` (see :class:`~liveblog.logreader.LogReader`), so that no reader sees an
    entry a failover then loses.
    """

    def __init__(self, client: redis.Redis | redis.RedisCluster, *, min_replicas: int = 0, wait_ms: int = 500):
        self._client = client
        self._replicas = (min_replicas, wait_ms)

    def nodes(self) -> list[str]:
        """The Redis nodes that hold logs: one, or each primary of a cluster (``host:port``)."""
        if isinstance(self._client, redis.RedisCluster):
            return sorted(node.name for node in self._client.get_primaries())
        return [STANDALONE]

    def node_of(self, blog_id: str) -> str:
        if isinstance(self._client, redis.RedisCluster):
            node = self._client.get_node_from_key(keys.log(blog_id))
            if node is None:
                raise RuntimeError(f"the cluster's layout has no node for blog {blog_id!r}")
            return node.name
        return STANDALONE

    async def refresh_layout(self) -> None:
        """Re-read which node holds which slots (after MOVED: a failover or resharding)."""
        if isinstance(self._client, redis.RedisCluster):
            await self._client.nodes_manager.initialize()

    def log_reader(self, node: str) -> LogReader:
        """A dedicated connection to ``node``, for blocking reads of its logs."""
        if isinstance(self._client, redis.RedisCluster):
            host, _, port = node.rpartition(":")
            node_client = redis.Redis(
                host=host,
                port=int(port),
                single_connection_client=True,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=_TIMEOUT,
            )
            return LogReader(node_client, cluster=True)
        # Outside the shared pool: a join storm must never starve the tailer. A pool of one
        # connection rather than a single-connection client: redis-py reconnects the latter
        # without asking the sentinels, to the primary it had; a pool's new connection asks.
        shared = self._client.connection_pool
        own: redis.ConnectionPool
        if isinstance(shared, SentinelConnectionPool):
            own = shared.sentinel_manager.master_for(shared.service_name, max_connections=1).connection_pool
        else:
            own = redis.ConnectionPool(
                connection_class=shared.connection_class, max_connections=1, **shared.connection_kwargs
            )
        client = redis.Redis(connection_pool=own)
        return LogReader(client, min_replicas=self._replicas[0], wait_ms=self._replicas[1])

    async def unblock(self, node: str, client_id: int) -> None:
        """End a tailer's blocking read on ``node`` now (it then reads again, with new blogs)."""
        if isinstance(self._client, redis.RedisCluster):
            target = self._client.get_node(node_name=node)
            await self._client.execute_command("CLIENT UNBLOCK", client_id, target_nodes=target)
        else:
            await self._client.client_unblock(client_id)
