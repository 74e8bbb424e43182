"""Readers whose network blocks WebSockets: the same live channel as Server-Sent Events."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import zlib
from dataclasses import replace

import pytest
from conftest import RECV_TIMEOUT, UNLIMITED, running_service


class EventStream:
    """An SSE client that parses records as a browser's EventSource would."""

    def __init__(self, response):
        self.response = response
        self.lines = response.aiter_lines()

    async def record(self) -> dict[str, str]:
        """The next record with data (comments and retry lines are skipped)."""
        fields: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(anext(self.lines), RECV_TIMEOUT)
            if line == "":
                if "data" in fields:
                    return fields
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")

    async def message(self) -> tuple[str, dict]:
        record = await self.record()
        return record.get("id", ""), json.loads(record["data"])


def open_events(service, blog_id="ukraine", **headers):
    return service.http.stream("GET", f"/api/v1/blogs/{blog_id}/events", headers=headers)


async def test_sse_reader_gets_a_snapshot_then_live_events_with_cursors_as_ids(service):
    await service.create_blog()
    await service.post(body="<p>before</p>")
    async with open_events(service) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = EventStream(response)
        record_id, snapshot = await stream.message()
        assert snapshot["type"] == "snapshot" and record_id == snapshot["cursor"]
        entry = await service.post(body="<p>after</p>")
        record_id, event = await stream.message()
    assert event["entry"]["id"] == entry["id"]
    assert record_id == event["cursor"]


async def test_last_event_id_resumes_with_the_missed_events(service):
    await service.create_blog()
    async with open_events(service) as response:
        _, snapshot = await EventStream(response).message()
    missed = [await service.post(body=f"<p>missed {i}</p>") for i in range(3)]
    async with open_events(service, **{"Last-Event-ID": snapshot["cursor"]}) as response:
        stream = EventStream(response)
        received = [(await stream.message())[1] for _ in range(3)]
    assert [m["entry"]["id"] for m in received] == [e["id"] for e in missed]


async def test_sse_for_an_unknown_blog_is_404_in_the_error_shape(service):
    response = await service.http.get("/api/v1/blogs/nope/events")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_stalled_sse_reader_is_told_4408_and_the_stream_ends(redis_server):
    settings = replace(UNLIMITED, reader_buffer_bytes=64 * 1024)
    async with running_service(redis_server.url, settings) as service:
        await service.create_blog()
        hub = service.services.hub
        port = int(service.base_url.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
        writer.write(b"GET /api/v1/blogs/ukraine/events HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        transport = writer.transport
        transport.pause_reading()  # from here on this reader reads nothing, like a stalled phone
        while hub.readers("ukraine") != 1:
            await asyncio.sleep(0.01)
        big_body = "<p>" + "Eyewitness account. " * 900 + "</p>"
        for _ in range(400):
            await service.post(body=big_body)
            if hub.readers("ukraine") == 0:
                break
        assert hub.readers("ukraine") == 0, "the stalled SSE reader was never cut off"
        transport.resume_reading()
        rest = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), RECV_TIMEOUT)  # the response's end
        writer.close()
    assert b'event: close\ndata: {"code":4408' in rest


@pytest.mark.parametrize("cursor", ["not-a-cursor", "abc.18446744073709551616-0", "abc.0-99999999999999999999"])
async def test_sse_with_a_bogus_last_event_id_starts_from_a_snapshot(service, cursor):
    await service.create_blog()
    async with open_events(service, **{"Last-Event-ID": cursor}) as response:
        _, message = await EventStream(response).message()
    assert message["type"] == "snapshot"


async def test_a_stopping_server_tells_its_sse_readers_to_come_back_at_once(redis_server):
    """Readers are the connections that never finish by themselves: told 1012 first, they
    reconnect elsewhere instead of holding the shutdown until uvicorn gives up on them."""
    async with running_service(redis_server.url, UNLIMITED) as service:
        await service.create_blog()
        async with open_events(service) as response:
            stream = EventStream(response)
            assert (await stream.message())[1]["type"] == "snapshot"
            service.server.should_exit = True
            close = await stream.record()
            lines = [line async for line in stream.lines]  # and then the response ends
    assert close["event"] == "close"
    told = json.loads(close["data"])
    assert told["code"] == 1012
    # when to come back: within the spread, and the same for an EventSource that reconnects itself
    assert 0 <= told["retry_ms"] < UNLIMITED.reconnect_spread_ms
    assert close["retry"] == str(told["retry_ms"])
    assert lines == []


async def test_an_event_stream_asked_gzipped_is_one_gzip_stream_with_each_event_readable_as_it_comes(redis_server):
    async with running_service(redis_server.url, UNLIMITED) as service:
        await service.create_blog()
        prose = "".join(
            f"<p>Paragraph {i}: the council met again tonight to discuss the flooding.</p>" for i in range(8)
        )
        await service.post(headline="Before", body=prose)
        async with open_events(service, **{"Accept-Encoding": "gzip"}) as response:
            assert response.headers["content-encoding"] == "gzip" and "Accept-Encoding" in response.headers["vary"]
            raw, text = b"", b""
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunks = response.aiter_raw()

            async def until(needle: bytes) -> None:
                nonlocal raw, text
                while needle not in text:  # what came so far inflates to whole records: nothing held back
                    chunk = await asyncio.wait_for(anext(chunks), RECV_TIMEOUT)
                    raw, text = raw + chunk, text + inflater.decompress(chunk)

            await until(b'"type":"snapshot"')
            posted = await service.post(headline="After", body=prose)
            await until(posted["id"].encode())
            service.server.should_exit = True
            await until(b"event: close")
            raw += b"".join([chunk async for chunk in chunks])
    # the stream ends as a gzip stream should (its CRC and length check out), and weighs much less
    whole = gzip.decompress(raw)
    assert whole.startswith(b"retry: ") and b'"code":1012' in whole and whole.count(b"Paragraph 7") == 2
    assert 2 * len(raw) < len(whole)


async def test_an_event_stream_is_not_gzipped_unless_asked_or_with_compression_off(redis_server):
    for settings, asked in ((UNLIMITED, "identity"), (replace(UNLIMITED, compression=0), "gzip")):
        async with running_service(redis_server.url, settings) as service:
            await service.create_blog(f"blog-{asked}")
            async with open_events(service, f"blog-{asked}", **{"Accept-Encoding": asked}) as response:
                assert "content-encoding" not in response.headers
                _, message = await EventStream(response).message()
                assert message["type"] == "snapshot"
