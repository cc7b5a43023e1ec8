"""An event stream's keepalives, its end at the worker's stop, and its end with its
source, on a real asyncio source (an async generator fed by a queue)."""

import asyncio

from quotacache.web.events import with_keepalive

DONE = object()


async def fed(queue: asyncio.Queue) -> object:
    while (item := await queue.get()) is not DONE:
        yield item


async def test_items_still_come_after_keepalives():
    """A keepalive must not cancel the pending read: a cancelled async generator is
    closed, and every later item would be lost (the stream went dead after 15 s idle)."""
    queue: asyncio.Queue = asyncio.Queue()
    got = []
    async for item in with_keepalive(fed(queue), asyncio.Event(), every=0.01):
        got.append(item)
        if got.count(None) == 3 and not queue.qsize() and "a" not in got:
            queue.put_nowait("a")
        elif item == "a":
            queue.put_nowait("b")
        elif item == "b":
            queue.put_nowait(DONE)
    assert got[:3] == [None, None, None]
    assert [item for item in got if item is not None] == ["a", "b"]


async def test_a_stop_ends_an_idle_stream_at_once():
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = asyncio.get_running_loop().time()
    got = [item async for item in with_keepalive(fed(asyncio.Queue()), stop, every=60.0)]
    assert got == []
    assert asyncio.get_running_loop().time() - started < 5


async def test_the_stream_ends_with_its_source():
    queue: asyncio.Queue = asyncio.Queue()
    for item in ("x", "y", DONE):
        queue.put_nowait(item)
    got = [item async for item in with_keepalive(fed(queue), asyncio.Event(), every=60.0)]
    assert got == ["x", "y"]


async def test_a_stream_whose_client_left_ends_at_the_next_look_not_the_next_keepalive():
    """A client that left is seen only when the stream writes: at a 15 s keepalive,
    its slot stayed taken that long (50 dropped streams kept every client out)."""
    loop = asyncio.get_running_loop()
    left: list[bool] = []
    loop.call_later(0.05, left.append, True)
    started = loop.time()
    got = [item async for item in with_keepalive(fed(asyncio.Queue()), asyncio.Event(),
                                                 every=60.0, gone=lambda: bool(left),
                                                 look=0.02)]
    assert got == []
    assert loop.time() - started < 1.0
