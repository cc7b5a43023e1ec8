"""Which requests the socket answers itself: one whole plain GET of HTTP/1.1, nothing else."""

from __future__ import annotations

import asyncio

from aiohttp import web as aioweb

from quotacache.web.hit_socket import (
    KEPT_REQUEST_BYTES,
    KEPT_REQUESTS,
    SEES_IDLE,
    Answers,
    _Server,
    hot_target,
)

PLAIN = b"GET /cache/cryptometer/ticker/BTC HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_plain_get_names_its_key_and_query():
    assert hot_target(PLAIN) == "cryptometer/ticker/BTC"
    assert hot_target(PLAIN.replace(b"BTC", b"BTC?wait=2")) == "cryptometer/ticker/BTC?wait=2"
    keep = PLAIN.replace(b"\r\n\r\n", b"\r\nConnection: Keep-Alive\r\nAccept: */*\r\n\r\n")
    assert hot_target(keep) == "cryptometer/ticker/BTC"


def test_anything_aiohttp_must_judge_goes_the_slow_way():
    slow = [
        PLAIN[:-2],  # not complete yet
        PLAIN + PLAIN,  # pipelined
        PLAIN.replace(b"GET", b"HEAD"),
        PLAIN.replace(b"/cache/", b"/stats/"),
        PLAIN.replace(b"HTTP/1.1", b"HTTP/1.0"),  # closes unless asked: aiohttp's rules
        PLAIN.replace(b"BTC", b"B%54C"),  # percent-encoded: aiohttp decodes
        PLAIN.replace(b"BTC", b"BTC#x"),
        PLAIN.replace(b"BTC", "BTCé".encode()),
        PLAIN.replace(b"Host: x", b"Host: x\r\nConnection: close"),
        PLAIN.replace(b"Host: x", b"Host: x\r\nContent-Length: 3"),
        PLAIN.replace(b"Host: x", b"Host: x\r\nTransfer-Encoding: chunked"),
        PLAIN.replace(b"Host: x", b"Host: x\r\nExpect: 100-continue"),
        PLAIN.replace(b"Host: x", b"Host: x\r\nUpgrade: websocket"),
        PLAIN.replace(b"Host: x", b"Host: x\r\nX-Quotacache-Peer: t"),  # not rate limited
        PLAIN.replace(b"Host: x", b"Host: x\r\n folded"),
        PLAIN.replace(b"Host: x", b"Host x"),
        PLAIN.replace(b"Host: x", b"Host : x"),
    ]
    for data in slow:
        assert hot_target(data) is None, data


async def exchange(port: int, chunks: list[bytes]) -> bytes:
    """Send each chunk after the answer to the one before; all the answers' bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = b""
    for chunk in chunks:
        writer.write(chunk)
        got += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return got


def bodies(answers: bytes) -> list[bytes]:
    """The bodies, in order, of answers whose bodies are single words."""
    return [part.split(b"HTTP/1.1")[0] for part in answers.split(b"\r\n\r\n")[1:]]


async def test_the_socket_answers_only_while_aiohttp_has_nothing_of_the_connection():
    """Real loopback server: aiohttp's answers say "aiohttp", the socket's "socket"."""
    assert SEES_IDLE, "this aiohttp does not show when it waits for a request"
    entered, release = asyncio.Event(), asyncio.Event()

    async def handle(request: aioweb.BaseRequest) -> aioweb.Response:
        if request.path == "/slow":
            entered.set()
            await release.wait()
        return aioweb.Response(text="aiohttp" if request.path != "/slow" else "slow")

    def answer(data: bytes, address: str) -> bytes | None:
        assert address == "127.0.0.1"
        if hot_target(data) is None:
            return None
        return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsocket"

    protocols: list = []
    factory = _Server(aioweb.Server(handle), lambda: answer)
    server = await asyncio.get_running_loop().create_server(
        lambda: protocols.append(factory()) or protocols[-1], "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    other = PLAIN.replace(b"/cache/", b"/stats/")
    with_body = b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    try:
        assert bodies(await exchange(port, [PLAIN, PLAIN, other, PLAIN])) == [
            b"socket", b"socket", b"aiohttp", b"socket"]
        # after a body, the connection is aiohttp's for good
        assert bodies(await exchange(port, [PLAIN, with_body, PLAIN])) == [
            b"socket", b"aiohttp", b"aiohttp"]

        # a hit that arrives while aiohttp answers a slower request comes after it
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(entered.wait(), 5)
        before = protocols[-1].last
        writer.write(PLAIN)
        deadline = asyncio.get_running_loop().time() + 5
        while protocols[-1].last == before:  # the hit has reached the server
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        release.set()
        got = b""
        while got.count(b"\r\n\r\n") < 2 or not got.endswith((b"aiohttp", b"socket")):
            got += await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        assert bodies(got) == [b"slow", b"aiohttp"]
    finally:
        server.close()
        await server.wait_closed()


def test_the_request_limit_is_asked_only_for_a_hit():
    """A read the socket cannot answer is charged by the guard: not here as well."""
    asked: list[str] = []

    def allowed(address: str) -> bool:
        asked.append(address)
        return True

    def take(key: str, admit) -> tuple[bytes, int] | None:
        return (b"{}", 0) if key.endswith("BTC") and admit() else None

    answer = Answers(take, allowed)
    assert answer(PLAIN.replace(b"BTC", b"ETH"), "10.0.0.1") is None
    assert asked == []
    assert answer(PLAIN, "10.0.0.1").endswith(b"\r\n\r\n{}")
    assert asked == ["10.0.0.1"]


def test_parsed_requests_are_kept_within_their_bound_and_a_kept_key_is_asked_each_time():
    """The same bytes are parsed once, but a HIT is still asked of ``take`` every time;
    requests built to differ (or too long to keep) never grow the map past its bound."""
    taken: list[str] = []

    def take(key: str, admit) -> tuple[bytes, int] | None:
        taken.append(key)
        return (b"{}", 0) if len(taken) > 1 else None  # a miss first, then a hit

    answer = Answers(take, lambda address: True)
    assert answer(PLAIN, "10.0.0.1") is None
    assert answer(PLAIN, "10.0.0.1").endswith(b"\r\n\r\n{}")
    assert taken == ["cryptometer/ticker/BTC"] * 2
    for i in range(3 * KEPT_REQUESTS):
        answer(PLAIN.replace(b"BTC", f"S{i}".encode()), "10.0.0.1")
        assert len(answer.keys) <= KEPT_REQUESTS
    pad = b"\r\nX-Pad: " + b"a" * KEPT_REQUEST_BYTES + b"\r\n\r\n"
    long = PLAIN.replace(b"\r\n\r\n", pad)
    answer(long, "10.0.0.1")
    assert long not in answer.keys
