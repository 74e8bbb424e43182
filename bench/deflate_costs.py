"""What permessage-deflate costs per message, in zlib alone: shared against dedicated compression.

Run it from the repository, in the project's virtualenv::

    python bench/deflate_costs.py

Two ways a server can compress a live channel (RFC 7692):

- **shared** (what liveblog does): no context takeover, so each event is compressed once, on its
  own, and the same bytes go to every reader (``liveblog.deflate.compress``). The cost is per
  event, whatever the number of readers.
- **dedicated**: a compressor per reader with context takeover, so each message may refer back to
  the reader's earlier ones (smaller), but every event is compressed once *per reader*, and each
  reader holds its compressor's state.

For each kind of message (the fan-out benchmark's entries, whose body repeats one sentence; a
prose entry that does not repeat itself; the viewer count; a snapshot) it prints the bytes per message, raw
and compressed each way, and the CPU time per message: per event for shared, per reader per
event for dedicated, and what that makes at 1k and 10k readers. Also: what inflating costs a
reader, and how much memory one dedicated compressor holds. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fanout import entry_body  # noqa: E402

from liveblog import deflate  # noqa: E402

#: An event as the hub sends it (captured from a running service), with the body to vary.
EVENT = {
    "type": "event",
    "cursor": "f66ef030.1796288748773-0",
    "event": "entry.created",
    "entry": {
        "id": "1a23b271ce4e0ec5b",
        "blog": "bench",
        "version": 1,
        "time": "2026-12-03T09:05:48.772214Z",
        "created_at": "2026-12-03T09:05:48.772214Z",
        "updated_at": "2026-12-03T09:05:48.772214Z",
        "author": {"name": "liveblog", "role": None, "location": None},
        "headline": "",
        "body": "",
        "media": None,
        "tags": [],
        "pinned": False,
        "key_event": False,
        "deleted": False,
        "status": "published",
        "related": [],
        "edited_at": None,
        "published_at": "2026-12-03T09:05:48.772214Z",
        "publish_at": None,
        "corrections": [],
        "review_note": None,
        "retraction_note": None,
    },
}
PROSE = (Path(__file__).parent.parent / "docs" / "DESIGN.md").read_text()


def bench_event(seq: int) -> bytes:
    """An event carrying the fan-out benchmark's 600-byte POST body."""
    posted = json.loads(entry_body(seq, 600))
    event = json.loads(json.dumps(EVENT))
    event["entry"].update(headline=posted["headline"], body=posted["body"])
    return json.dumps(event, separators=(",", ":")).encode()


def prose_event(seq: int) -> bytes:
    """An event whose body is ~600 bytes of prose that does not repeat (the next 600 characters of
    docs/DESIGN.md each time: when it wraps, the earlier text is far more than a 32 KiB window
    back), in paragraphs with a link."""
    start = (seq * 600) % (len(PROSE) - 700)
    text = PROSE[start : start + 600].replace("<", "").replace("&", "")
    paragraphs = [f"<p>{part}</p>" for part in text.split("\n\n") if part.strip()]
    event = json.loads(json.dumps(EVENT))
    event["entry"].update(
        headline=f"seq={seq} t={time.time():.6f}",
        body="".join(paragraphs) + f'<p><a href="https://example.com/story/{seq}">More</a></p>',
    )
    return json.dumps(event, separators=(",", ":")).encode()


def snapshot(seq: int) -> bytes:
    """A joining reader's snapshot: 20 prose entries (the default snapshot size)."""
    entries = [json.loads(prose_event(seq + k))["entry"] for k in range(20)]
    message = {"type": "snapshot", "cursor": EVENT["cursor"], "blog": {"id": "bench", "title": "Bench"}}
    message.update(entries=entries, pinned=[])
    return json.dumps(message, separators=(",", ":")).encode()


def viewers(seq: int) -> bytes:
    return b'{"type":"viewers","count":%d}' % (1000 + seq)


def shared(messages: list[bytes], level: int) -> tuple[float, float]:
    """(seconds per message, compressed bytes per message) compressing each on its own."""
    started = time.perf_counter()
    total = 0
    for message in messages:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        total += len(compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4
    return (time.perf_counter() - started) / len(messages), total / len(messages)


def dedicated(messages: list[bytes], level: int, readers: int) -> tuple[float, float]:
    """(seconds per message per reader, compressed bytes per message) with a compressor per
    reader that keeps its context, ``readers`` of them in turn for every message."""
    compressors = [zlib.compressobj(level, zlib.DEFLATED, -15) for _ in range(readers)]
    started = time.perf_counter()
    total = 0
    for message in messages:
        for compressor in compressors:
            total += len(compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4
    return (time.perf_counter() - started) / len(messages) / readers, total / len(messages) / readers


def inflate(messages: list[bytes]) -> float:
    """Seconds per message a reader spends inflating a shared frame."""
    frames = []
    for message in messages:
        compressor = zlib.compressobj(deflate.LEVEL, zlib.DEFLATED, -15)
        frames.append((compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4])
    started = time.perf_counter()
    for data in frames:
        zlib.decompressobj(-15).decompress(data + deflate.TAIL)
    return (time.perf_counter() - started) / len(frames)


def compressor_memory() -> int:
    """Bytes one zlib compressor holds (window, hash chains, buffers), as tracemalloc sees them:
    zlib allocates through Python's allocator."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = [zlib.compressobj(deflate.LEVEL, zlib.DEFLATED, -15) for _ in range(100)]
        for compressor in keep:
            compressor.compress(b"x" * 1000)
        return (tracemalloc.get_traced_memory()[0] - before) // len(keep)
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--readers", type=int, default=100, help="dedicated compressors per run (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, of which the median is shown (default 3)")
    args = parser.parse_args()

    print(f"zlib {zlib.ZLIB_RUNTIME_VERSION}; medians of {args.repeat} runs; µs per message")
    print(f"one dedicated compressor holds {compressor_memory() / 1024:.0f} KiB (x 10k readers)")
    header = (
        "| message | raw B | level | shared B | shared µs/event | dedicated B | dedicated µs/reader "
        "| dedicated ms/event at 1k / 10k | reader inflates µs |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    kinds = [("benchmark entry", bench_event), ("prose entry", prose_event), ("viewer count", viewers)]
    kinds.append(("snapshot, 20 prose entries", snapshot))
    for name, make in kinds:
        messages = [make(seq) for seq in range(args.messages if make is not snapshot else args.messages // 20)]
        raw = statistics.mean(len(message) for message in messages)
        for level in (1, 6):
            runs = [shared(messages, level) for _ in range(args.repeat)]
            shared_s, shared_b = statistics.median(r[0] for r in runs), runs[0][1]
            inflate_s = statistics.median(inflate(messages) for _ in range(args.repeat))
            line = f"| {name} | {raw:.0f} | {level} | {shared_b:.0f} ({raw / shared_b:.1f}x) | {shared_s * 1e6:.1f} "
            if make is snapshot:  # each reader gets one, when it joins: nothing to take over
                print(line + f"| - | - | - | {inflate_s * 1e6:.1f} |")
                continue
            few = messages[: max(10, args.messages // 20)]
            druns = [dedicated(few, level, args.readers) for _ in range(args.repeat)]
            dedicated_s, dedicated_b = statistics.median(r[0] for r in druns), druns[0][1]
            print(
                line + f"| {dedicated_b:.0f} ({raw / dedicated_b:.1f}x) | {dedicated_s * 1e6:.1f} "
                f"| {dedicated_s * 1e3 * 1000:.0f} / {dedicated_s * 1e3 * 10000:.0f} | {inflate_s * 1e6:.1f} |"
            )
    print("\nsmall messages, shared, level %d: raw bytes -> frame bytes (2-byte header)" % deflate.LEVEL)
    for size in (40, 80, 120, 160, 200, 300, 500):
        message = prose_event(7)[:size]
        compressor = zlib.compressobj(deflate.LEVEL, zlib.DEFLATED, -15)
        packed = len(compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)) - 4
        print(f"  {size:4d} -> {packed:4d} ({size - packed:+d} saved)")


if __name__ == "__main__":
    main()
