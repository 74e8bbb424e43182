"""What a request handler works with: one typed object per process, made at startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from .batches import Batched
from .caching import ShortCache
from .config import Settings
from .connection import Connections
from .hub import Hub
from .limits import ConnectionLimiter, RateLimiter
from .metrics import Metrics
from .snapshots import SnapshotReads
from .storage import Storage

if TYPE_CHECKING:
    from .staff import StaffChannels
from .topology import Topology
from .webhook_store import WebhookStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Storage
    #: Which Redis node holds which blog's log.
    topology: Topology
    hub: Hub
    metrics: Metrics
    #: Rendered pages and blog records, for a second (see :mod:`liveblog.caching`).
    pages: ShortCache
    #: Blog records read from the store, those asked for in one turn of the loop together
    #: (None: no such blog; see :mod:`liveblog.batches`).
    blog_records: Batched[str, bytes | None]
    #: Snapshot reads shared by readers joining at the same time.
    snapshots: SnapshotReads
    #: Open live connections per process and per client address.
    readers: ConnectionLimiter
    #: New live connections per client address.
    connects: RateLimiter
    #: Entry writes per token.
    writes: RateLimiter
    #: Sign-ins (``POST /api/v1/session``) per client address.
    signins: RateLimiter
    #: The live connections, pinged and told at shutdown.
    connections: Connections
    #: The consoles' staff channels and the tasks that follow them.
    staff: StaffChannels
    #: Blogs' webhooks and their deliveries.
    webhooks: WebhookStore


def services(connection: HTTPConnection) -> Services:
    """The services of the app serving ``connection`` (set by its lifespan, see :mod:`liveblog.app`)."""
    found: Services = connection.app.state.services
    return found
