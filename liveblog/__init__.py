"""liveblog: a live-blog backend. Reporters post over HTTP, Redis Streams store, readers get pushes."""

__version__ = "0.1.0"
