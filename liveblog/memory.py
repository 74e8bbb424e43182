"""Giving memory back to the system once the caches let it go.

CPython hands blocks of more than 512 bytes to the C allocator. glibc's keeps what is freed, in
the heap of whichever thread freed it (pages are gzipped in worker threads, each with its own
arena), so after a flood of reads the caches are empty but the process stays as big as at the
peak. :func:`trim` asks glibc to return the free pages of every arena (``malloc_trim``, a
documented glibc call); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError) as exc:  # musl and other C libraries have no malloc_trim
        log.info("the C library cannot give freed memory back (%s); RSS stays at its peak", exc)
        return None


_TRIM = _malloc_trim()


def trim() -> None:
    """Return freed heap pages to the system, where the C library can."""
    if _TRIM is not None:
        _TRIM(0)
