"""Social embeds: which provider a URL belongs to, and what a reader's click may load.

Readers see a placeholder that names the provider; nothing is requested from the provider until
they click (DESIGN §6). The server decides both the provider and the frame to load, from the
URL alone, so the widget stays small and a reporter cannot point a frame anywhere else.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

#: The providers a reporter may embed, by the hosts their links use.
PROVIDERS = {
    "x": ("x.com", "twitter.com"),
    "youtube": ("youtube.com", "youtu.be", "youtube-nocookie.com"),
    "vimeo": ("vimeo.com",),
    "instagram": ("instagram.com",),
    "tiktok": ("tiktok.com",),
    "bluesky": ("bsky.app",),
    "facebook": ("facebook.com", "fb.watch"),
}
#: What placeholders call each provider.
NAMES = {
    "x": "X",
    "youtube": "YouTube",
    "vimeo": "Vimeo",
    "instagram": "Instagram",
    "tiktok": "TikTok",
    "bluesky": "Bluesky",
    "facebook": "Facebook",
}
_ID = r"[A-Za-z0-9_-]{1,64}"


class Embed(NamedTuple):
    provider: str
    #: The iframe src a click loads, or None when the provider has no frame (a link instead).
    frame: str | None


def provider_of(url: str) -> str | None:
    host = (urlsplit(url).hostname or "").lower()
    for provider, hosts in PROVIDERS.items():
        if any(host == known or host.endswith("." + known) for known in hosts):
            return provider
    return None


def _match(pattern: str, path: str) -> str | None:
    found = re.fullmatch(pattern, path)
    return found.group(1) if found else None


def _frame(provider: str, url: str) -> str | None:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if provider == "youtube":
        video = (
            parse_qs(parts.query).get("v", [None])[0]
            if path == "/watch"
            else _match(rf"/(?:embed|shorts|live)/({_ID})", path)
            or (_match(rf"/({_ID})", path) if parts.hostname == "youtu.be" else None)
        )
        # The privacy-enhanced domain: no cookies until the reader plays the video.
        return f"https://www.youtube-nocookie.com/embed/{video}" if video and re.fullmatch(_ID, video) else None
    if provider == "vimeo":
        video = _match(r"/(?:video/)?([0-9]{1,20})", path)
        return f"https://player.vimeo.com/video/{video}?dnt=1" if video else None
    if provider == "x":
        post = _match(r"/[A-Za-z0-9_]{1,15}/status/([0-9]{1,25})", path)
        return f"https://platform.twitter.com/embed/Tweet.html?id={post}&dnt=true" if post else None
    if provider == "instagram":
        post = _match(rf"/(?:p|reel|tv)/({_ID})", path)
        return f"https://www.instagram.com/p/{post}/embed/" if post else None
    if provider == "tiktok":
        video = _match(r"/@[A-Za-z0-9_.]{1,32}/video/([0-9]{1,25})", path)
        return f"https://www.tiktok.com/embed/v2/{video}" if video else None
    if provider == "facebook":
        kind = "video" if "/videos/" in path or parts.hostname == "fb.watch" else "post"
        return f"https://www.facebook.com/plugins/{kind}.php?href={quote(url, safe='')}"
    return None  # Bluesky's frame needs the author's DID, which the post's URL does not hold


def embed_of(url: str) -> Embed | None:
    """The provider of ``url`` and its frame; None if it is no known provider's."""
    provider = provider_of(url)
    return None if provider is None else Embed(provider, _frame(provider, url))
