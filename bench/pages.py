"""Page benchmark: the public page of a blog of long entries under load, and what that load does
to live readers on the same process.

Run it by hand from the repository, in the project's virtualenv (wrk on PATH: Debian's ``wrk``)::

    python bench/pages.py                      # this checkout
    PYTHONPATH=../base python bench/pages.py   # another checkout's liveblog, for a before/after

What happens:

1. ``liveblog serve --port 0`` starts in a temporary data dir (its own embedded redis-server),
   pinned to core 0 unless ``--no-pin`` (bench/fanout.py's ``Server``). A blog ``long`` gets
   ``--entries`` long entries (Spanish, Madrid time: about 12 KB of HTML each, with highlights,
   quotes, links, related stories, a photo and tags), and a blog ``bench`` is for live readers.
2. The first request for ``/blogs/long`` is timed (a cold render), then
   ``wrk -t1 -c<connections> --latency`` asks for it for ``--seconds`` (pinned to core 1), as a
   browser does (``Accept-Encoding: gzip``) and then without compression.
3. Live fan-out alone: ``--readers`` WebSocket readers of ``bench`` (bench/loadgen.c, on core 1),
   ``--rate`` posts per second for ``--duration`` seconds; post-to-receive p50/p99/max.
4. The same again while wrk asks for ``/blogs/long`` (gzip) at about ``--page-rate`` requests/s
   (20 connections, each pausing between requests) for the whole posting window; and once more
   with wrk flat out (the process saturated: what is left for live readers then).

It prints one table: page requests/s and latency (wrk's p50/p99), bytes per response, the cold
render, fan-out latency without and with the page load, lost/duplicated events, and server CPU.
Everything talks to 127.0.0.1 only; every run is bounded in time; the server, its Redis, wrk
and the generator are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fanout
import httpx
import uvloop

BLOG = "long"
#: Words the entries are made of, picked at random (seeded): text that compresses as prose does.
WORDS = (
    "los equipos de emergencia trabajan desde primera hora en la comarca donde el agua llegó a superar "
    "metro medio vecinos retiran barro portales garajes mientras llegan brigadas limpieza ayuntamiento "
    "habilitado polideportivo centro acogida familias desalojadas carreteras cortadas autovía tramo "
    "servicio trenes suspendido confederación hidrográfica embalse caudal barranco desbordado alcaldesa "
    "pide maquinaria pesada militares desplegados helicópteros rescates tejados calles coches arrastrados "
    "ayudas damnificados gobierno autonómico delegación aviso rojo lluvias acumuladas litros metro cuadrado"
).split()
QUOTE = (
    "<blockquote><p>Necesitamos maquinaria pesada ya, no mañana. Hay calles enteras bloqueadas.</p>"
    "<footer>Alcaldesa de Paiporta</footer></blockquote>"
)


def paragraph(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(45, 75))]
    words[0] = words[0].capitalize()
    marked = rng.randrange(len(words) - 4)
    words[marked] = "<mark>" + words[marked]
    words[marked + 3] += "</mark>"
    linked = rng.randrange(len(words))
    words[linked] = f'<a href="https://news.example/{rng.randrange(10**6)}">{words[linked]}</a>'
    words[rng.randrange(len(words))] = f"<strong>{rng.choice(WORDS)}</strong>"
    return "<p>" + " ".join(words) + ".</p>"


def long_entry(i: int, body_bytes: int) -> dict:
    """One long entry of about ``body_bytes`` of HTML."""
    rng = random.Random(i)
    parts, size = [], len(QUOTE)
    while size < body_bytes:
        parts.append(paragraph(rng))
        size += len(parts[-1])
    parts.insert(len(parts) // 2, QUOTE)
    return {
        "headline": f"Actualización {i}: la situación en los municipios afectados",
        "body": "".join(parts),
        "author": {"name": "Lucía Ferrer", "role": "Enviada especial", "location": "Paiporta"},
        "tags": ["dana", f"municipio-{i % 5}"],
        "key_event": i % 4 == 0,
        "media": {
            "type": "image",
            "url": f"https://images.example/{i}.jpg",
            "caption": "Voluntarios en la calle Mayor.",
            "credit": "Ana Gil",
            "width": 1200,
            "height": 675,
        },
        "related": [
            {"url": "https://news.example/mapa", "title": "Mapa de las zonas afectadas", "kicker": "Gráfico"},
            {"url": "https://news.example/ayudas", "title": "Cómo pedir las ayudas", "kicker": "Servicio"},
        ],
    }


#: A paced load: each of wrk's connections waits this long before each request.
PACED_CONNECTIONS = 20


def run_wrk(url: str, seconds: float, connections: int, pin: bool, gzip: bool, rate: float | None = None) -> dict:
    """wrk on ``url``: flat out, or about ``rate`` requests/s (connections pausing between requests)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", url]
    if gzip:
        command[1:1] = ["-H", "Accept-Encoding: gzip"]
    if rate is not None:
        script = Path(tempfile.mkdtemp(prefix="liveblog-wrk-")) / "paced.lua"
        # The pause, less about a millisecond for each answer itself.
        script.write_text(f"function delay() return {max(0.0, 1000 * connections / rate - 1):.3f} end\n")
        command[1:1] = ["-s", str(script)]
    if pin:
        command = ["taskset", "-c", "1", *command]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    found = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk said:\n{out}")
    latency = {m.group(1): m.group(2) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(found.group(1)),
        "p50": latency.get("50"),
        "p99": latency.get("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sockets.group(1) if sockets else "",
        "transfer": re.search(r"Transfer/sec:\s*(\S+)", out).group(1),
    }


async def fan_out(
    args: argparse.Namespace, server: fanout.Server, client: httpx.AsyncClient, page: str | None, rate: float | None
) -> dict:
    """Readers of ``bench`` while entries are posted to it; with wrk on ``page`` meanwhile, if
    given (at about ``rate`` requests/s, or flat out)."""
    generator = await fanout.Generator.start(args, server.port)
    try:
        connected = await generator.receive(fanout.BATCH_TIMEOUT * (args.readers // fanout.BATCH + 2))
        if not connected["ready"]:
            raise RuntimeError(f"no reader connected: {connected['failures']}")
        generator.send({"go": True})
        load = None
        if page is not None:
            connections = PACED_CONNECTIONS if rate is not None else args.connections
            load = asyncio.create_task(
                asyncio.to_thread(run_wrk, page, args.duration + 1, connections, args.pin, True, rate)
            )
        window = fanout.CpuWindow(server)
        posted, post_times, failed = await fanout.post_entries(client, args.rate, args.duration, args.body_bytes)
        cpu = window.percentages()["server_cpu_pct"]
        generator.send({"posted": posted})
        await generator.receive(fanout.DRAIN_TIMEOUT + 10)
        result = await generator.receive(60)
        return {
            "readers": connected["ready"],
            "posted": len(posted),
            "post_failures": failed,
            "result": result,
            "server_cpu_pct": cpu,
            "page": await load if load is not None else None,
        }
    finally:
        await generator.stop()


async def measure(args: argparse.Namespace, server: fanout.Server) -> dict:
    headers = {"Authorization": f"Bearer {fanout.ADMIN_TOKEN}", "Content-Type": "application/json"}
    base = f"http://{fanout.HOST}:{server.port}"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=fanout.POST_TIMEOUT) as client:
        blog = {"id": BLOG, "title": "Directo: la DANA en Valencia", "language": "es", "timezone": "Europe/Madrid"}
        (await client.post("/api/v1/blogs", json=blog)).raise_for_status()
        (await client.post("/api/v1/blogs", json={"id": fanout.BLOG, "title": "Bench"})).raise_for_status()
        for i in range(args.entries):
            (
                await client.post(f"/api/v1/blogs/{BLOG}/entries", json=long_entry(i, args.entry_bytes))
            ).raise_for_status()
        page = f"{base}/blogs/{BLOG}"
        started = time.perf_counter()
        cold = await client.get(page, headers={"Accept-Encoding": "identity"})
        cold_ms = 1000 * (time.perf_counter() - started)
        cold.raise_for_status()
        zipped = await client.get(page, headers={"Accept-Encoding": "gzip"})
        figures: dict = {
            "cold_ms": cold_ms,
            "bytes": len(cold.content),
            "gzip_bytes": int(zipped.headers.get("content-length", len(zipped.content))),
            "encoding": zipped.headers.get("content-encoding", "identity"),
            "articles": cold.text.count('<article id="'),
        }
        figures["page_gzip"] = await asyncio.to_thread(run_wrk, page, args.seconds, args.connections, args.pin, True)
        figures["page_identity"] = await asyncio.to_thread(
            run_wrk, page, args.seconds, args.connections, args.pin, False
        )
        figures["alone"] = await fan_out(args, server, client, None, None)
        figures["paced"] = await fan_out(args, server, client, page, args.page_rate)
        figures["loaded"] = await fan_out(args, server, client, page, None)
    return figures


def report(args: argparse.Namespace, figures: dict) -> None:
    def wrk(w: dict) -> str:
        extra = f"; non-2xx {w['non_2xx']}" if w["non_2xx"] else ""
        extra += f"; socket errors: {w['socket_errors']}" if w["socket_errors"] else ""
        return f"{w['rps']:,.0f} req/s  (p50 {w['p50']}, p99 {w['p99']}, {w['transfer']}/s{extra})"

    def live(f: dict) -> str:
        r = f["result"]
        p50, p99, worst = r["latency_ms"]
        return (
            f"p50 {p50:.1f}  p99 {p99:.1f}  max {worst:.1f} ms; {f['posted']} posts to {f['readers']} readers, "
            f"lost {r['lost']}, duplicated {r['duplicates']}, disconnected {sum(r['disconnected'].values())}; "
            f"server CPU {f['server_cpu_pct']:.0f}%"
        )

    rows = [
        (
            "page",
            f"/blogs/{BLOG}: {figures['articles']} entries, {figures['bytes']:,} B "
            f"({figures['gzip_bytes']:,} B {figures['encoding']})",
        ),
        ("cold render", f"{figures['cold_ms']:.0f} ms (first request)"),
        (f"page, gzip, -c{args.connections}", wrk(figures["page_gzip"])),
        (f"page, identity, -c{args.connections}", wrk(figures["page_identity"])),
        ("live alone", live(figures["alone"])),
        (f"live, page at {args.page_rate:g}/s", live(figures["paced"])),
        ("  the page meanwhile", wrk(figures["paced"]["page"])),
        ("live, page flat out", live(figures["loaded"])),
        ("  the page meanwhile", wrk(figures["loaded"]["page"])),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nliveblog pages: {args.entries} entries of ~{args.entry_bytes} B, pinned={args.pin}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if args.json:
        print(json.dumps(figures))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20, help="entries on the page (default 20)")
    parser.add_argument("--entry-bytes", type=int, default=12_000, help="HTML per entry body (default 12000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run on the page alone (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--page-rate", type=float, default=1000.0, help="requests/s on the page in the paced live phase (default 1000)"
    )
    parser.add_argument("--readers", type=int, default=1000, help="live readers (default 1000)")
    parser.add_argument("--rate", type=float, default=5.0, help="posts per second to the live blog (default 5)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of posting, each phase (default 15)")
    parser.add_argument("--body-bytes", type=int, default=600, help="size of each live post (default 600)")
    parser.add_argument("--json", action="store_true", help="also print every figure as JSON")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2,
        help="server on core 0; wrk, the generator and the poster on core 1 (default: on with 2 cores)",
    )
    fanout.add_generator_options(parser)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")
    return args


def main() -> None:
    args = parse_args()
    if subprocess.run(["pgrep", "-x", "chromium"], capture_output=True).returncode == 0:
        print("warning: chromium is running (browser tests?); the figures will be noisy", file=sys.stderr)
    fanout.prepare_controller(args)
    with tempfile.TemporaryDirectory(prefix="liveblog-pages-") as tmp:
        server = fanout.Server(Path(tmp), args.pin, args.readers)
        try:
            budget = args.seconds * 2 + args.duration * 3 + 600
            report(args, uvloop.run(asyncio.wait_for(measure(args, server), budget)))
        finally:
            code = server.stop()
            problems = server.problems()
            print(f"  server exit code {code}; warnings and errors in its log: {sum(problems.values()) or 'none'}")
            for line, count in problems.items():
                print(f"    {count:>5} x {line}")


if __name__ == "__main__":
    main()
