"""Settings, from ``LIVEBLOG_*`` environment variables (the CLI overrides some with flags).

The README's configuration table lists the same names, flags and defaults as ``FIELDS`` below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

#: A reader told to wait longer than this would look like an outage.
MAX_RECONNECT_SPREAD_MS = 60_000
#: The longest head or send timeout (s): an hour is already "never" for a client.
MAX_TIMEOUT = 3600.0
#: The largest listen backlog ``listen()`` takes (the kernel caps it at ``net.core.somaxconn``).
MAX_BACKLOG = 65535
#: The most entries a live snapshot holds (a reader's ``?limit=`` too).
MAX_SNAPSHOT = 100


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./liveblog-data")
    #: Empty: start an embedded redis-server in ``data_dir``. ``redis+sentinel://…`` follows a
    #: Sentinel-managed primary (:func:`sentinel_url`), ``redis+cluster://…`` a Redis Cluster.
    redis_url: str = ""
    #: Replicas that must have a write before it is acknowledged (``WAIT``); 0: at once.
    redis_min_replicas: int = 0
    #: Milliseconds a write waits for those replicas before it is answered 503 ``not_replicated``.
    redis_wait_ms: int = 500
    #: Empty: generate one on first start and keep it in ``data_dir``.
    admin_token: str = ""
    max_body_bytes: int = 64 * 1024
    #: Seconds a client has to send a request's head (from connecting, or from its first byte);
    #: a silent or byte-at-a-time (slowloris) client is cut off then, with 408.
    head_timeout: float = 10.0
    #: Seconds a client may read nothing of a response whose unsent part fills the buffers; then
    #: its connection is cut (a stalled SSE reader, whose 4408 record it cannot receive).
    send_timeout: float = 60.0
    #: A live reader whose unsent data passes this is closed with 4408.
    reader_buffer_bytes: int = 1 << 20
    snapshot_size: int = 20
    log_maxlen: int = 10_000
    #: Records kept per blog's audit trail (about: Redis trims whole stream nodes).
    audit_maxlen: int = 100_000
    #: Published versions kept per entry for ``GET …/versions``.
    versions_kept: int = 100
    idempotency_ttl: int = 86_400
    ws_max_message_bytes: int = 4096
    #: Open live connections (WebSocket + SSE) per process; more get 503.
    max_readers: int = 20_000
    #: Open live connections per client address; more are closed with 4429 (SSE: 429).
    max_readers_per_ip: int = 500
    #: Open TCP connections per client address (HTTP and live; trusted proxies not counted);
    #: more are closed as soon as they are accepted.
    max_connections_per_ip: int = 1000
    #: New live connections per client address per second (bursts of 10x); more get 429.
    connects_per_ip_per_second: float = 10.0
    #: Entry writes per token per second (bursts of 5x); more get 429.
    writes_per_token_per_second: float = 10.0
    #: Seconds between the viewer counts pushed to live readers.
    viewers_interval: float = 5.0
    #: "text" for people, "json" (one object per line) for log pipelines.
    log_format: str = "text"
    #: 1: one access-log line per request and per live connection (at its end); 0: none.
    access_log: int = 1
    #: The service's public origin (``https://live.example.com``): the base of every absolute
    #: link (canonical, OpenGraph, JSON-LD, feeds, oEmbed) and the origin browser writes must
    #: come from. Empty: a request's Host, if it is one of ``allowed_hosts``.
    public_url: str = ""
    #: Host names (comma-separated) whose requests may build links while ``public_url`` is empty.
    allowed_hosts: str = "localhost,127.0.0.1,::1"
    #: Proxies whose X-Forwarded-For/-Proto are believed (comma-separated addresses, or "*").
    forwarded_allow_ips: str = "127.0.0.1"
    ws_ping_interval: float = 20.0
    #: 1: permessage-deflate on the live WebSocket, gzip on SSE and the API's JSON, when the
    #: client offers them; 0: everything goes uncompressed.
    compression: int = 1
    #: A restart's (SIGTERM's) 1012 tells each live reader when to come back: delays spread
    #: evenly over this many milliseconds, so that a deploy is not a reconnect storm. 2 s: 10k
    #: readers were all back within 2.1 s of the first 1012 on one shared core (bench/RESULTS.md).
    reconnect_spread_ms: int = 2000
    #: The shortest of those delays: they are spread over ``[floor, floor + spread)``. For a
    #: restart that leaves the port closed for a while (stop, then start), this many ms sends no
    #: reader back before the new process listens; a handover (``reuse_port``) needs none.
    reconnect_floor_ms: int = 0
    #: 1: listen with ``SO_REUSEPORT``, so that a new ``liveblog serve`` can start on the port of a
    #: running one (same user, same flag) before the old one is stopped: a deploy without a gap.
    #: 0: a second process on the port is refused, as a mistake would be.
    reuse_port: int = 0
    #: Connections the kernel queues on the listening socket before they are accepted. A deploy
    #: sends 10k readers back within the reconnect spread; past this many at once the kernel
    #: drops their SYNs, and each dropped one waits out the client's 1 s retransmit.
    backlog: int = 4096
    #: A browser session (the console's cookie) ends after this many idle seconds.
    session_idle_seconds: int = 8 * 3600
    #: Sign-ins per client address per minute (bursts of 10); more get 429.
    signins_per_ip_per_minute: float = 10.0
    #: Staff live connections (the consoles' channel) per process.
    max_staff_readers: int = 500
    #: Seconds between a staff channel's looks at its blog's audit trail.
    staff_poll_interval: float = 0.25
    #: Seconds between the scheduler's looks for entries whose publish time has come.
    schedule_interval: float = 0.25
    #: The publisher in JSON-LD, and the admin token's default byline.
    publisher_name: str = "liveblog"
    #: The publisher's logo (an https URL) in JSON-LD; empty: none.
    publisher_logo: str = ""
    #: Worker processes serving the one port (1: the service runs in a single process).
    workers: int = 1
    #: Hosts webhooks may call (comma-separated names, or ``.suffix`` for subdomains); empty:
    #: none, so no webhook can be registered. Only a host listed exactly may use http or a
    #: private/loopback address.
    webhook_hosts: str = ""
    #: A failed delivery waits this long before its first retry, doubling (with jitter) after each.
    webhook_retry_base_ms: int = 1000
    #: The longest wait between two tries of a delivery.
    webhook_retry_max_ms: int = 3_600_000
    #: Seconds after a delivery was made (or replayed) that it is retried; then it has failed.
    webhook_retry_for: int = 86_400
    #: An event pending this long to a process (it died, or hangs) is claimed by another; a
    #: retry being tried is leased for as long.
    webhook_claim_idle_ms: int = 60_000
    #: Seconds between a process's looks at the outboxes and the retry schedules.
    webhook_poll_interval: float = 0.5
    #: Seconds to connect to a receiver, and to wait for its answer.
    webhook_connect_timeout: float = 3.0
    webhook_timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then ``LIVEBLOG_<NAME>`` variables, then ``overrides`` that are not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(f"LIVEBLOG_{field.name.upper()}")
            if raw is not None:
                kind: type[Any] = type(field.default)
                try:
                    values[field.name] = kind(raw)
                except ValueError:
                    raise SystemExit(f"LIVEBLOG_{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
        values.update({name: value for name, value in overrides.items() if value is not None})
        settings = cls(**values)
        if settings.redis_url.startswith(SENTINEL_SCHEME):
            try:
                sentinel_url(settings.redis_url)
            except ValueError as exc:
                raise SystemExit(f"LIVEBLOG_REDIS_URL: {exc}") from None
        for name, bound in BOUNDS.items():
            value = getattr(settings, name)
            if not bound.holds(value):
                flag = f" (--{name.replace('_', '-')})" if name in FLAGS else ""
                raise SystemExit(f"LIVEBLOG_{name.upper()}{flag} must be {bound}, not {value!r}")
        if settings.redis_min_replicas and settings.redis_url.startswith("redis+cluster://"):
            raise SystemExit("LIVEBLOG_REDIS_MIN_REPLICAS works with one Redis or Sentinel, not with Redis Cluster")
        if settings.webhook_retry_base_ms > settings.webhook_retry_max_ms:
            raise SystemExit("LIVEBLOG_WEBHOOK_RETRY_BASE_MS must not be above LIVEBLOG_WEBHOOK_RETRY_MAX_MS")
        if settings.public_url:
            try:
                check_public_url(settings.public_url)
            except ValueError as exc:
                raise SystemExit(f"LIVEBLOG_PUBLIC_URL: {exc}") from None
        return settings


SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379
MAX_REPLICAS = 16
MAX_WAIT_MS = 4000
_SENTINEL_FORM = "redis+sentinel://[user:password@]host[:port][,host2[:port2]…]/service[/db]"


class Bound(NamedTuple):
    """The values a numeric setting may take: from ``low`` to ``high``, both included, or above
    ``low`` when ``above`` (a rate or a timeout of 0 would stop the service, not limit it)."""

    low: float
    high: float
    above: bool = False

    def holds(self, value: float) -> bool:
        # Written so that NaN, which fails every comparison, is refused too.
        return (self.low < value if self.above else self.low <= value) and value <= self.high

    def __str__(self) -> str:
        return f"above {self.low:g} and at most {self.high:g}" if self.above else f"from {self.low:g} to {self.high:g}"


_DAY = 86_400
_MIB = 1 << 20

#: Every numeric setting's range, checked at start so that a typo at 3 a.m. is one line naming
#: the variable, not a service that refuses every reader (``MAX_READERS=-5``), spins
#: (``VIEWERS_INTERVAL=0``) or never pings (``WS_PING_INTERVAL=nan``). ``workers`` is not here:
#: its ceiling depends on the CPUs, and the CLI checks it.
BOUNDS: dict[str, Bound] = {
    "port": Bound(0, 65535),
    "redis_min_replicas": Bound(0, MAX_REPLICAS),
    # Above this the client's socket timeout (5 s) would cut the WAIT off.
    "redis_wait_ms": Bound(1, MAX_WAIT_MS),
    # An entry's body alone may be 20,000 characters of up to 4 bytes each.
    "max_body_bytes": Bound(1024, 16 * _MIB),
    # 0 or less would cut every client off at once.
    "head_timeout": Bound(0, MAX_TIMEOUT, above=True),
    "send_timeout": Bound(0, MAX_TIMEOUT, above=True),
    "reader_buffer_bytes": Bound(4096, 1024 * _MIB),
    "snapshot_size": Bound(1, MAX_SNAPSHOT),
    "log_maxlen": Bound(100, 10_000_000),
    "audit_maxlen": Bound(100, 100_000_000),
    "versions_kept": Bound(1, 10_000),
    # A client's retries of one post must all fall within it.
    "idempotency_ttl": Bound(60, 30 * _DAY),
    "ws_max_message_bytes": Bound(256, _MIB),
    "max_readers": Bound(1, 1_000_000),
    "max_readers_per_ip": Bound(1, 1_000_000),
    "max_connections_per_ip": Bound(1, 1_000_000),
    "connects_per_ip_per_second": Bound(0, 1e9, above=True),
    "writes_per_token_per_second": Bound(0, 1e9, above=True),
    "viewers_interval": Bound(0.1, _DAY),
    "access_log": Bound(0, 1),
    # 0: no pings (readers behind a proxy that cuts idle connections then lose theirs).
    "ws_ping_interval": Bound(0, MAX_TIMEOUT),
    "compression": Bound(0, 1),
    "reconnect_spread_ms": Bound(0, MAX_RECONNECT_SPREAD_MS),
    "reconnect_floor_ms": Bound(0, MAX_RECONNECT_SPREAD_MS),
    "reuse_port": Bound(0, 1),
    "backlog": Bound(1, MAX_BACKLOG),
    "session_idle_seconds": Bound(60, 30 * _DAY),
    "signins_per_ip_per_minute": Bound(0, 1e6, above=True),
    "max_staff_readers": Bound(1, 100_000),
    "staff_poll_interval": Bound(0.01, 60),
    "schedule_interval": Bound(0.01, 60),
    "webhook_retry_base_ms": Bound(10, 3_600_000),
    "webhook_retry_max_ms": Bound(10, 7 * _DAY * 1000),
    "webhook_retry_for": Bound(1, 30 * _DAY),
    "webhook_claim_idle_ms": Bound(100, _DAY * 1000),
    "webhook_poll_interval": Bound(0.01, 60),
    "webhook_connect_timeout": Bound(0, 60, above=True),
    "webhook_timeout": Bound(0, 300, above=True),
}

#: The settings ``liveblog serve`` also takes as flags (``--name``), named in its errors.
FLAGS = frozenset({"host", "port", "data_dir", "redis_url", "log_format", "workers", "reuse_port", "backlog"})


class SentinelUrl(NamedTuple):
    """Where a Sentinel-managed Redis is: the sentinels to ask, the primary's service name, and
    the database and credentials for the data nodes."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def sentinel_url(url: str) -> SentinelUrl:
    """Parse ``redis+sentinel://[user:password@]host[:port][,host2[:port2]…]/service[/db]``
    (the convention of redis-py's users; redis-py itself has no URL form for Sentinel). Ports
    default to 26379. ValueError, saying what is wrong but never echoing the password."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME} ({_SENTINEL_FORM})")
    rest = url.removeprefix(SENTINEL_SCHEME)
    if "?" in rest or "#" in rest:
        raise ValueError(f"a Sentinel URL takes no query or fragment ({_SENTINEL_FORM})")
    location, _, path = rest.partition("/")
    userinfo, _, hosts = location.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = [_sentinel_address(member) for member in hosts.split(",")]
    service, _, db = path.partition("/")
    if not service:
        raise ValueError(f"the Sentinel URL names no service (the primary's name, as in {_SENTINEL_FORM})")
    if db and not db.isdigit():
        raise ValueError(f"the Sentinel URL's database {db!r} is not a number ({_SENTINEL_FORM})")
    return SentinelUrl(sentinels, unquote(service), int(db or 0), unquote(username) or None, unquote(password) or None)


def _sentinel_address(member: str) -> tuple[str, int]:
    host, port = member, ""
    if member.startswith("["):  # [IPv6]:port
        host, _, port = member[1:].partition("]")
        port = port.removeprefix(":")
    elif ":" in member:
        host, _, port = member.rpartition(":")
    if not host or not (port == "" or (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"sentinel {member!r} is not host[:port] ({_SENTINEL_FORM})")
    return host, int(port or SENTINEL_PORT)


def check_public_url(url: str) -> str:
    """``url`` as an origin (``scheme://host[:port]``); ValueError if it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{url!r} is not an http(s) origin such as https://live.example.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r} is not an http(s) origin such as https://live.example.com")
    return f"{parts.scheme}://{parts.netloc.lower()}"
