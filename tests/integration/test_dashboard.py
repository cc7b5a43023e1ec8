"""The dashboard and the cluster-wide /stats: figures of every worker, summed, pushed live,
and drawn by a real browser during the demo's load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time

import httpx
import pytest

from quotacache.client import Client
from quotacache.dev.demo import DEMO_READS, Load
from quotacache.web.dashboard import MAX_VIEWERS

from ..browser import Browser, chromium_path, first_paint
from .conftest import poll

pytestmark = pytest.mark.integration

SYMBOLS = [f"S{i}" for i in range(8)]  # the ticker endpoint allows 9 calls a minute


def two_workers(deployment):
    first = deployment.start_worker("w1")
    second = deployment.start_worker("w2")
    poll(lambda: list(second.get("/stats").json()["workers"].values()) == ["ok", "ok"],
         timeout=40, message="both workers in the assignment")
    return first, second


def test_stats_are_summed_over_both_workers_whichever_is_asked(deployment):
    first, second = two_workers(deployment)
    for symbol in SYMBOLS:  # about half of them owned by the other worker: forwarded
        answer = first.get(f"/cache/cryptometer/ticker/{symbol}")
        assert answer.status_code == 202 and answer.headers["X-Cache"] == "MISS"
    local = [w.get("/stats", params={"scope": "local"}).json() for w in (first, second)]
    assert all(part["reads"] > 0 for part in local), "each worker owns some of the keys"
    assert sum(part["reads"] for part in local) == len(SYMBOLS)
    for worker in (first, second):
        cluster = worker.stats()
        assert cluster["scope"] == "cluster"
        assert cluster["reads"] == len(SYMBOLS)
        assert cluster["endpoints"]["cryptometer/ticker"]["misses"] == len(SYMBOLS)
        assert set(cluster["workers"]) == {first.url, second.url}
    # Entries land on their owners; the cluster's freshness counts every one once.
    poll(lambda: first.stats()["freshness"].get("cryptometer/ticker", {}).get("entries")
         == len(SYMBOLS), timeout=30, message="every entry counted once")
    for symbol in SYMBOLS:  # the owner's headers reach the reader, whoever is asked
        answer = second.get(f"/cache/cryptometer/ticker/{symbol}")
        assert answer.headers["X-Cache"] == "HIT" and "Age" in answer.headers
    bad = first.get("/stats", params={"scope": "everything"})
    assert bad.status_code == 400 and "scope" in bad.json()["error"]


async def test_dashboard_page_script_and_live_snapshots(deployment):
    worker = deployment.start_worker()
    page = worker.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script src="/dashboard.js">' in page.text
    script = worker.get("/dashboard.js")
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "EventSource(\"/dashboard/events\")" in script.text
    snapshot = worker.get("/dashboard/snapshot").json()
    assert snapshot["services"]["cryptometer"]["strategy"] in (
        "AGGRESSIVE", "NORMAL", "CONSERVATIVE", "MINIMAL")
    assert snapshot["stats"]["workers"] == {worker.url: "ok"}

    events: list[dict] = []
    async with httpx.AsyncClient(timeout=10) as http, \
            http.stream("GET", f"{worker.url}/dashboard/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == 1:  # a read between two snapshots shows in the second
                    await http.get(f"{worker.url}/cache/cryptometer/ticker/BTC")
                if len(events) == 3:
                    break
    assert events[0]["time"] < events[1]["time"] < events[2]["time"]
    assert events[2]["stats"]["reads"] == events[0]["stats"]["reads"] + 1
    # Worked out by the server from its earlier snapshots: that read (a miss) is in the
    # fresh share of the last seconds, and the budget names the binding limit.
    fresh = events[2]["fresh"]
    assert fresh["seconds"] is not None and fresh["overall"]["reads"] >= 1
    assert fresh["services"]["cryptometer"]["hits"] <= fresh["services"]["cryptometer"]["reads"]
    assert events[2]["calls"]["seconds"] is not None
    binding = events[2]["budget"]["cryptometer"]
    assert binding["scope"] == "cryptometer" and binding["allowance"] > 0
    assert binding["limit"] in [row["limit"] for row in events[2]["services"]["cryptometer"]
                                ["limits"] if row["scope"] == "cryptometer"]


EMBEDDED = re.compile(r'<script type="application/json" id="snapshot">(.*?)</script>', re.S)


def element_text(dom: str, ident: str) -> str:
    """The text of the element with id ``ident`` in a serialized DOM (no nested tags)."""
    match = re.search(rf'id="{ident}"[^>]*>([^<]*)<', dom)
    assert match, f"no #{ident} in the page"
    return match.group(1).strip()


@contextlib.contextmanager
def every_dashboard_stream_taken(worker):
    """Hold all of the worker's dashboard event streams open, so the next one is refused."""
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_VIEWERS):
            connection = socket.create_connection(("127.0.0.1", worker.port), timeout=20)
            held.append(connection)
            connection.sendall(b"GET /dashboard/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = connection.recv(4096)
                assert chunk, "the event stream closed"
                head += chunk
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert worker.get("/dashboard/events").status_code == 503
        yield
    finally:
        for connection in held:
            connection.close()


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed "
                    "(make test installs it)")
def test_a_plain_screenshot_shows_the_figures_without_the_event_stream(deployment, tmp_path):
    """``chromium --headless --screenshot`` of the page, waiting for nothing but Chromium's
    own load event, while the event stream is refused (every slot taken, so the figures
    cannot come from it): the snapshot embedded in the page is drawn, not "connecting…"."""
    from PIL import Image

    worker = deployment.start_worker()
    symbols = ["BTC", "ETH", "SOL"]
    # A miss each (one upstream call each), then hits once the entries are in.
    poll(lambda: all(worker.get(f"/cache/cryptometer/ticker/{s}").headers["X-Cache"] == "HIT"
                     for s in symbols), timeout=30, message="the entries cached")
    stop = threading.Event()

    def reader() -> None:  # reads go on while the page loads: a live fresh share
        with httpx.Client(base_url=worker.url, timeout=10) as http:
            while not stop.wait(0.1):
                http.get("/cache/cryptometer/ticker/BTC")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        page = worker.get("/")
        assert page.headers["Cache-Control"] == "no-store"
        embedded = json.loads(EMBEDDED.search(page.text).group(1))
        assert embedded["stats"]["hits"] >= len(symbols)
        assert embedded["budget"]["cryptometer"]["used"] >= 1
        assert embedded["fresh"]["overall"]["share"] is not None
        with every_dashboard_stream_taken(worker):
            dom = first_paint(f"{worker.url}/", tmp_path / "chromium",
                              tmp_path / "first-paint.png", size=(1280, 900))
    finally:
        stop.set()
        thread.join(15)
    # The page as Chromium had it when it took the screenshot: no update from the stream,
    # the figures of the embedded snapshot.
    assert element_text(dom, "updates") == "0"
    status = element_text(dom, "status")
    assert status.startswith("snapshot · ") or status == "disconnected, retrying…", status
    assert re.fullmatch(r"\d+\.\d %", element_text(dom, "fresh-share"))
    assert int(element_text(dom, "reads")) >= len(symbols) * 2
    assert element_text(dom, "workers") == "1 / 1"
    row = re.search(r'data-service="cryptometer">.*?class="used">(\d+) / (\d+)</b>\s+calls\s+'
                    r'in the last', dom, re.S)
    assert row and 1 <= int(row.group(1)) <= int(row.group(2)), "no budget bar"
    assert re.search(r'class="fresh" data-share="[\d.]+"', dom), "no fresh share"
    chart = re.search(r'<canvas id="chart-hit-rate"[^>]*data-points="(\d+)" '
                      r'data-last="\[([^\]]*)\]"', dom)
    assert chart and int(chart.group(1)) >= 1 and chart.group(2) != "null", "empty chart"
    # The screenshot has them drawn: the budget bar and the chart's point (blue), the fresh
    # share bar (green). The page in its "connecting…" state has neither colour at all.
    image = Image.open(tmp_path / "first-paint.png")
    assert image.size == (1280, 900)
    whole = (0, 0, *image.size)
    assert pixels_of(image, whole, (0x2A, 0x7A, 0xE2), tolerance=30) > 150, "no blue drawn"
    assert pixels_of(image, whole, (0x19, 0xA3, 0x5B), tolerance=30) > 2000, "no green drawn"


def pixels_of(image, box, color, tolerance=40):
    """How many pixels inside ``box`` are within ``tolerance`` of ``color``."""
    region = image.crop(box).convert("RGB")
    return sum(1 for pixel in region.getdata()
               if all(abs(a - b) <= tolerance for a, b in zip(pixel, color, strict=True)))


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed "
                    "(make test installs it)")
async def test_the_dashboard_in_chromium_follows_the_demo_load_of_two_workers(
        deployment, tmp_path):
    from PIL import Image

    first, second = two_workers(deployment)
    cryptometer_reads = [r for r in DEMO_READS if r[0] == "cryptometer"]
    stop = asyncio.Event()

    async def demo_load() -> None:
        async with Client(deployment.settings, base_url=first.url) as client:
            load = Load(client, first.url, ["BTC", "ETH", "SOL", "XRP", "DOGE"], rate=40,
                        reads=cryptometer_reads)
            while not stop.is_set():
                await load.run(time.monotonic() + 0.5)
            await load.http.aclose()

    load = asyncio.create_task(demo_load())
    value = "document.getElementById('{}').textContent"
    try:
        async with Browser(f"{second.url}/", tmp_path / "chromium") as browser:
            first_look = await _wait_for(browser, value, lambda look: look["updates"] >= 2)
            later = await _wait_for(browser, value, lambda look: look["updates"]
                                    >= first_look["updates"] + 4
                                    and look["calls_points"] > first_look["calls_points"])
            shot = await browser.screenshot(tmp_path / "dashboard.png")
            box = await browser.evaluate(
                "(() => { const r = document.getElementById('chart-hit-rate')"
                ".getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()")
            rows = await browser.evaluate(
                "[...document.querySelectorAll('#services tbody tr')].map(r => "
                "[r.dataset.service, r.querySelector('.badge') && "
                "r.querySelector('.badge').textContent])")
    finally:
        stop.set()
        await load
    # Live: the figures moved between two looks, aggregated over both workers.
    assert later["workers"] == "2 / 2"
    assert int(later["reads"]) > int(first_look["reads"]) > 0
    assert later["hit_points"] > first_look["hit_points"]
    # The screenshot holds what the page says: a hit-rate line drawn in its chart's box.
    image = Image.open(shot)
    ratio = image.width / 1400
    scaled = tuple(int(v * ratio) for v in box)
    assert pixels_of(image, scaled, (0x2A, 0x7A, 0xE2)) > 20, "no hit-rate line drawn"
    assert ["cryptometer", rows[0][1]] == rows[0] and rows[0][1] in (
        "AGGRESSIVE", "NORMAL", "CONSERVATIVE", "MINIMAL")


async def _look(browser, value) -> dict:
    return await browser.evaluate(
        "({updates: +document.getElementById('updates').textContent, "
        f"reads: {value.format('reads')}, workers: {value.format('workers')}, "
        "hit_points: +document.getElementById('chart-hit-rate').dataset.points || 0, "
        "calls_points: +document.getElementById('chart-calls').dataset.points || 0})")


async def _wait_for(browser, value, predicate, timeout: float = 30.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    look = await _look(browser, value)
    while not predicate(look):
        assert asyncio.get_running_loop().time() < deadline, f"dashboard stuck: {look}"
        await asyncio.sleep(0.25)
        look = await _look(browser, value)
    return look
