"""Background tasks: tracked until they end, failures logged, all cancelled at shutdown."""

import asyncio
import logging

from quotacache.tasks import BackgroundTasks


async def test_a_task_is_tracked_until_it_ends():
    tasks = BackgroundTasks()
    go = asyncio.Event()

    async def work():
        await go.wait()
        return 42

    task = tasks.spawn(work())
    assert len(tasks) == 1
    go.set()
    assert await task == 42
    assert len(tasks) == 0


async def test_a_failing_task_is_logged_and_forgotten_not_raised(caplog):
    tasks = BackgroundTasks()

    async def fail():
        raise ValueError("boom")

    task = tasks.spawn(fail())
    await asyncio.gather(task, return_exceptions=True)
    failures = [r for r in caplog.records if r.message == "background task failed"]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert failures[0].exc_info[1].args == ("boom",)
    assert len(tasks) == 0


async def test_a_cancelled_task_is_not_logged_as_a_failure(caplog):
    tasks = BackgroundTasks()
    task = tasks.spawn(asyncio.Event().wait())
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not [r for r in caplog.records if r.message == "background task failed"]
    assert len(tasks) == 0


async def test_cancel_all_stops_every_task_and_waits_for_their_cleanup():
    tasks = BackgroundTasks()
    started = {name: asyncio.Event() for name in ("a", "b")}
    cleaned = []

    async def work(name):
        try:
            started[name].set()
            await asyncio.Event().wait()
        finally:
            cleaned.append(name)

    for name in started:
        tasks.spawn(work(name))
    await asyncio.gather(*(event.wait() for event in started.values()))
    await tasks.cancel_all()
    assert sorted(cleaned) == ["a", "b"]
    assert len(tasks) == 0


async def test_cancel_all_with_nothing_running_returns_at_once():
    await BackgroundTasks().cancel_all()


async def test_a_later_task_runs_its_coroutine_after_the_delay():
    tasks = BackgroundTasks()
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def when():
        return loop.time()

    ran_at = await tasks.later(0.05, when())
    assert ran_at - started >= 0.05


async def test_a_later_task_is_tracked_and_cancelled_before_it_runs():
    tasks = BackgroundTasks()
    ran = []

    async def work():
        ran.append(True)

    coro = work()
    tasks.later(60, coro)
    assert len(tasks) == 1
    await tasks.cancel_all()
    assert ran == [] and len(tasks) == 0
    coro.close()
