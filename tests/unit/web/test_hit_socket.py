"""Which requests the socket answers itself: one whole plain GET of HTTP/1.1, nothing else."""

from __future__ import annotations

import asyncio

from aiohttp import web as aioweb

from quotacache.web.hit_socket import _Server, hot_target

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


async def test_the_socket_answers_until_anything_else_arrives_then_aiohttp_does():
    """Real loopback server: aiohttp's answers say "aiohttp", the socket's "socket"."""

    async def handle(request: aioweb.BaseRequest) -> aioweb.Response:
        return aioweb.Response(text="aiohttp")

    answers: list[str] = []

    def answer(data: bytes, address: str) -> bytes | None:
        answers.append(address)
        if hot_target(data) is None:
            return None
        return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsocket"

    server = await asyncio.get_running_loop().create_server(
        _Server(aioweb.Server(handle), lambda: answer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        first = await exchange(port, [PLAIN, PLAIN])
        assert first.count(b"\r\n\r\nsocket") == 2 and b"\r\n\r\naiohttp" not in first
        other = PLAIN.replace(b"/cache/", b"/stats/")
        mixed = await exchange(port, [PLAIN, other, PLAIN])
        assert mixed.endswith(b"aiohttp") and mixed.count(b"\r\n\r\naiohttp") == 2
        assert mixed.count(b"\r\n\r\nsocket") == 1  # after the handover, aiohttp's for good
        assert set(answers) == {"127.0.0.1"}
    finally:
        server.close()
        await server.wait_closed()
