"""Open TCP connections per client address, counted at accept.

Every connection holds a file descriptor, and a process has a fixed number of them: one address
opening thousands would leave nothing for anyone else, not even ``/healthz``. So a connection
from an address that already has ``per_address`` open is closed as soon as it is accepted,
before it costs more than that moment. Proxies the service trusts
(``LIVEBLOG_FORWARDED_ALLOW_IPS``) are not counted: every reader behind them shares their
address, and capping readers behind a proxy is the proxy's job.

A connection changes hands after it is accepted (an HTTP protocol, then a WebSocket's), so no
single protocol sees it end. The doors keep each address's transports instead and count those
not yet closing: an address's closed ones are dropped whenever it connects again, and everyone's
once every :data:`SWEEP_EVERY` admissions, which keeps the memory bounded by the open ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource

log = logging.getLogger(__name__)

#: Admissions between sweeps of every address's closed transports.
SWEEP_EVERY = 1024
#: Addresses whose trust is remembered (then forgotten all at once, and learnt again).
TRUST_KEPT = 4096


class Doors:
    """Admits connections, at most ``per_address`` open per untrusted client address."""

    def __init__(self, per_address: int, trusted: str):
        self.per_address = per_address
        self._trust_all = trusted.strip() == "*"
        self._trusted = [ipaddress.ip_network(item, strict=False) for item in _addresses(trusted)]
        self._open: dict[str, set[asyncio.BaseTransport]] = {}
        self._admitted = 0
        #: Whether an address is trusted, as found: parsing it and testing every network was a
        #: visible share of a join storm's accepts, and a storm comes from few addresses (a proxy).
        self._trust: dict[str, bool] = {}

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Whether ``transport``, just accepted, may stay open (else the caller closes it)."""
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        if address is None or self._is_trusted(address):
            return True  # a unix socket, or a proxy
        self._admitted += 1
        if self._admitted % SWEEP_EVERY == 0:
            self._sweep()
        held = self._open.setdefault(address, set())
        if len(held) >= self.per_address:
            held.difference_update([t for t in held if t.is_closing()])
        if len(held) >= self.per_address:
            return False
        held.add(transport)
        return True

    def open_from(self, address: str) -> int:
        """Connections from ``address`` still open."""
        return sum(1 for transport in self._open.get(address, ()) if not transport.is_closing())

    def _sweep(self) -> None:
        for address, held in list(self._open.items()):
            held.difference_update([t for t in held if t.is_closing()])
            if not held:
                del self._open[address]

    def _is_trusted(self, address: str) -> bool:
        if self._trust_all:
            return True
        found = self._trust.get(address)
        if found is None:
            if len(self._trust) >= TRUST_KEPT:
                self._trust.clear()
            found = self._trust[address] = self._find_trusted(address)
        return found

    def _find_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)


def _addresses(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip() and item.strip() != "*"]
    valid = []
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            continue  # a host name or a unix socket path: uvicorn's business, never a peer address here
        valid.append(item)
    return valid


def raise_descriptor_limit() -> int:
    """Raise the process's file-descriptor limit to its hard limit, as Redis and nginx do (each
    connection holds one; the soft limit is often 1,024); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def per_address(configured: int) -> int:
    """``configured``, or a quarter of the descriptor limit if that is less: one address must never
    be able to take every descriptor, whatever the setting says."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    share = soft // 4 if soft != resource.RLIM_INFINITY else configured
    if share < configured:
        log.warning(
            "LIVEBLOG_MAX_CONNECTIONS_PER_IP=%d is more than a quarter of the %d file descriptors "
            "this process may open: each address gets %d",
            configured,
            soft,
            share,
        )
        return share
    return configured
