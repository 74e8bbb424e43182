"""Pages for readers who never call the API: the embed widget, the iframe page, the public page,
feeds and oEmbed."""

from __future__ import annotations

routes: list = []
