"""The service's own origin: where its absolute links point and its browser writes come from.

A link built from a request's ``Host`` header says whatever the client put there, so a page,
feed or oEmbed answer could point readers at any site, and a shared cache would keep it. The
origin is therefore ``LIVEBLOG_PUBLIC_URL`` when it is set; otherwise a request's Host is
believed only if it is on ``LIVEBLOG_ALLOWED_HOSTS`` (by default the loopback names, so that
``liveblog serve`` works as it comes), and any other Host is refused with 400.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from .config import check_public_url
from .errors import ApiError
from .services import services

_WEB_SCHEMES = {"ws": "http", "wss": "https"}


def allowed(names: str) -> frozenset[str]:
    """The host names of a comma-separated ``LIVEBLOG_ALLOWED_HOSTS`` (brackets and ports dropped)."""
    return frozenset(name.strip().strip("[]").lower() for name in names.split(",") if name.strip())


def origin(connection: HTTPConnection) -> str:
    """This service's origin for ``connection`` (no trailing slash); :class:`ApiError` 400
    when there is no public URL and the request's Host is not an allowed one."""
    settings = services(connection).settings
    if settings.public_url:
        return check_public_url(settings.public_url)
    hostname = connection.url.hostname
    if hostname is None or hostname.lower() not in allowed(settings.allowed_hosts):
        raise ApiError(
            400,
            "unknown_host",
            "this server does not answer to that Host; its operator sets LIVEBLOG_PUBLIC_URL "
            "(or adds the name to LIVEBLOG_ALLOWED_HOSTS)",
        )
    scheme = _WEB_SCHEMES.get(connection.url.scheme, connection.url.scheme)
    return f"{scheme}://{connection.url.netloc.lower()}"
