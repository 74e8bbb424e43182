"""The README's pictures of the public page and of the reporter console: a Spanish live blog in
Madrid time, as a desktop (1280 wide) and a phone (390 wide) show it, in real Chromium.

Run it from the repository, in the project's virtualenv (Debian's chromium at /usr/bin/chromium)::

    python docs/screenshots.py            # writes docs/page-es-{desktop,phone}.png, docs/console-{desktop,phone}.png
    python docs/screenshots.py --javascript   # with the widget taking over the stream

It starts ``liveblog serve --port 0`` in a temporary data directory (its own embedded
redis-server), writes a blog with the seed's content shapes (key events, a pinned summary,
related stories, a highlighted phrase, a quote with its speaker, bylines with role and place, a
photo with its credit, a social embed, tags), and photographs ``/blogs/{blog}``. Pictures come
from this script, not the network: requests for them are answered by the browser's router.
By default JavaScript is off: the pictures show the page itself, as the server renders it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import Route, async_playwright

HERE = Path(__file__).resolve().parent
TOKEN = "screenshots-admin-token"
CHROMIUM = "/usr/bin/chromium"
BLOG = "dana-valencia"
IMAGES = "https://images.example/"
MADRID = ZoneInfo("Europe/Madrid")
SIZES = {"desktop": (1280, 1500), "phone": (390, 1500)}
START_TIMEOUT = 30.0


def picture(name: str) -> bytes:
    """A stand-in photograph: a gradient with a horizon, as SVG."""
    hue = sum(map(ord, name)) % 360
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="675" viewBox="0 0 1200 675">
<defs><linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">
<stop offset="0" stop-color="hsl({hue},35%,62%)"/><stop offset="1" stop-color="hsl({(hue + 30) % 360},30%,82%)"/>
</linearGradient></defs><rect width="1200" height="675" fill="url(#sky)"/>
<path d="M0 470 L220 400 L430 450 L640 380 L860 440 L1200 390 L1200 675 L0 675 Z" fill="hsl({hue},25%,38%)"/>
<path d="M0 560 L300 520 L620 570 L900 530 L1200 560 L1200 675 L0 675 Z" fill="hsl({hue},20%,26%)"/></svg>""".encode()


def entries(now: datetime) -> list[dict]:
    """The blog's entries, at times before ``now``."""

    def at(minutes_ago: int) -> str:
        return (now - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")

    reporter = {"name": "Lucía Ferrer", "role": "Enviada especial", "location": "Paiporta"}
    desk = {"name": "Redacción", "location": "Madrid"}
    return [
        {
            "headline": "Lo que sabemos hasta ahora",
            "body": "<p>La Aemet mantiene el <strong>aviso rojo</strong> en el litoral sur de Valencia hasta las "
            "18:00. Los servicios de emergencia piden <mark>no desplazarse salvo causa de fuerza mayor</mark>.</p>"
            "<ul><li>Más de 40 carreteras cortadas.</li><li>Suspendidas las clases en 31 municipios.</li>"
            "<li>Cercanías suspende las líneas C1 y C2.</li></ul>",
            "author": desk,
            "pinned": True,
            "time": at(300),
            "tags": ["resumen"],
        },
        {
            "headline": "El Gobierno activa la Unidad Militar de Emergencias",
            "body": "<p>La UME despliega <strong>350 efectivos</strong> en la comarca de l'Horta Sud, donde el agua "
            "alcanzó el metro y medio de altura durante la madrugada.</p>",
            "author": reporter,
            "key_event": True,
            "time": at(38),
            "tags": ["ume", "emergencias"],
            "media": {
                "type": "image",
                "url": IMAGES + "barranco.svg",
                "caption": "El barranco del Poyo, desbordado a su paso por Paiporta.",
                "credit": "Ana Gil",
                "width": 1200,
                "height": 675,
            },
        },
        {
            "body": "<p>Los vecinos de la calle Mayor han pasado la noche en los pisos altos. «Nunca habíamos visto "
            "nada igual», cuenta una vecina mientras retira el barro del portal.</p>",
            "author": reporter,
            "time": at(120),
            "tags": ["paiporta"],
        },
        {
            "headline": "El alcalde: «Necesitamos maquinaria pesada ya»",
            "body": "<blockquote><p>Tenemos calles enteras bloqueadas por coches arrastrados. Necesitamos "
            "maquinaria pesada ya, no mañana.</p><footer>Alcalde de Paiporta, en Cadena SER</footer></blockquote>"
            "<p>El Ayuntamiento ha habilitado el polideportivo como centro de acogida.</p>",
            "author": reporter,
            "key_event": True,
            "time": at(9),
            "tags": ["paiporta", "emergencias"],
            "related": [
                {
                    "url": "https://news.example/dana-mapa",
                    "title": "Mapa de las zonas afectadas por la DANA",
                    "kicker": "Gráfico",
                    "image": IMAGES + "mapa.svg",
                },
                {
                    "url": "https://news.example/ayudas",
                    "title": "Cómo pedir las ayudas para damnificados",
                    "kicker": "Servicio",
                    "image": IMAGES + "ayudas.svg",
                },
            ],
        },
        {
            "body": "<p>La Confederación Hidrográfica del Júcar difunde las imágenes del embalse de Forata "
            "aliviando agua esta mañana.</p>",
            "author": desk,
            "time": at(64),
            "media": {
                "type": "embed",
                "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                "caption": "Vídeo: CHJ",
                "width": 16,
                "height": 9,
            },
            "tags": ["embalses"],
        },
        {
            "headline": "Reabre la A-7 en sentido Alicante",
            "body": "<p>La DGT informa de que la autovía vuelve a estar abierta entre Silla y Almussafes, con "
            "<strong>un solo carril</strong> por sentido.</p>",
            "author": {"name": "Marc Soler", "role": "Redactor", "location": "València"},
            "key_event": True,
            "time": at(170),
            "tags": ["carreteras"],
        },
    ]


class Serving:
    """``liveblog serve --port 0`` in ``data_dir``, until :meth:`stop`."""

    def __init__(self, data_dir: Path):
        env = {**os.environ, "LIVEBLOG_ADMIN_TOKEN": TOKEN, "LIVEBLOG_PUBLISHER_NAME": "Diario del Turia"}
        self.log = data_dir / "serve.log"
        with open(self.log, "wb") as out:
            command = [sys.executable, "-m", "liveblog.cli", "serve", "--port", "0", "--data-dir", str(data_dir)]
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not (found := re.search(r"serving on (http://\S+)", self.log.read_text())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("liveblog serve did not start:\n" + self.log.read_text())
            time.sleep(0.05)
        self.url = found.group(1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)


def evening() -> datetime:
    """Today's 19:10 in Madrid, or yesterday's if that is still to come: a newsroom's afternoon."""
    now = datetime.now(MADRID)
    at = now.replace(hour=19, minute=10, second=0, microsecond=0)
    return (at if at <= now else at - timedelta(days=1)).astimezone(UTC)


async def write_blog(url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=10) as client:
        blog = {
            "id": BLOG,
            "title": "Directo | La DANA en Valencia: toda la última hora",
            "description": "Carreteras cortadas, rescates y ayudas: lo que está pasando en l'Horta Sud, "
            "contado por nuestros enviados.",
            "language": "es",
            "timezone": "Europe/Madrid",
        }
        (await client.post("/api/v1/blogs", json=blog)).raise_for_status()
        for entry in sorted(entries(evening()), key=lambda e: e["time"]):
            (await client.post(f"/api/v1/blogs/{BLOG}/entries", json=entry)).raise_for_status()


async def photograph(url: str, javascript: bool) -> None:
    async def images(route: Route) -> None:
        await route.fulfill(body=picture(route.request.url), content_type="image/svg+xml")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            for name, (width, height) in SIZES.items():
                phone = name == "phone"
                context = await browser.new_context(
                    viewport={"width": width, "height": height},
                    device_scale_factor=2 if phone else 1,
                    is_mobile=phone,
                    has_touch=phone,
                    java_script_enabled=javascript,
                    locale="es-ES",
                    timezone_id="Europe/Madrid",
                    color_scheme="light",
                    reduced_motion="reduce",
                )
                await context.route(IMAGES + "**", images)
                page = await context.new_page()
                await page.goto(f"{url}/blogs/{BLOG}", wait_until="networkidle")
                await page.screenshot(path=str(HERE / f"page-es-{name}.png"))
                await context.close()
        finally:
            await browser.close()


async def photograph_console(url: str) -> None:
    """The console signed in as the admin, on the blog, with an entry being written."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            for name, (width, height) in {"desktop": (1280, 900), "phone": (390, 844)}.items():
                context = await browser.new_context(
                    viewport={"width": width, "height": height},
                    locale="es-ES",
                    timezone_id="Europe/Madrid",
                    color_scheme="light",
                )
                page = await context.new_page()
                await page.goto(f"{url}/console")
                await page.locator("#token").fill(TOKEN)
                await page.locator("form.signin button[type=submit]").click()
                await page.locator(f"a[href='#/b/{BLOG}']").click()
                await page.locator("#timeline li.entry").first.wait_for()
                await page.get_by_label("Titular").fill("Reabre el puente de Paiporta")
                await page.locator("#body").click()
                await page.keyboard.type("Los vecinos ya pueden cruzar a pie; el tráfico sigue cortado.")
                await page.screenshot(path=str(HERE / f"console-{name}.png"), full_page=name == "desktop")
                await context.close()
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--javascript", action="store_true", help="let the widget take over the stream")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="liveblog-screenshots-") as tmp:
        server = Serving(Path(tmp))
        try:
            asyncio.run(write_blog(server.url))
            asyncio.run(photograph(server.url, args.javascript))
            asyncio.run(photograph_console(server.url))
        finally:
            server.stop()
    print("wrote", *(HERE / f"{kind}-{name}.png" for kind in ("page-es", "console") for name in SIZES))


if __name__ == "__main__":
    main()
