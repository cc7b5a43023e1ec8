"""Faust's livelock check, installed by every app: each assigned partition is checked, in
one pass after one yield to the loop (not a ``wait_for`` round trip per partition)."""

import asyncio

from faust.transport.consumer import Consumer
from faust.types import TP

from quotacache.app import faust_app
from quotacache.settings import Settings
from quotacache.streams import livelock_check


class Assigned:
    """The parts of a Faust consumer the check uses."""

    def __init__(self, partitions, should_stop=False):
        self.partitions = partitions
        self.should_stop = should_stop
        self.checked = []

    def assignment(self):
        return set(self.partitions)

    def verify_event_path(self, now, tp):
        self.checked.append(tp)


def test_every_app_checks_partitions_in_one_pass(tmp_path):
    faust_app(Settings(profiles=[], data_dir=tmp_path, services={}))
    assert Consumer.verify_all_partitions_active is livelock_check.verify_all_partitions_active


async def test_each_assigned_partition_is_checked_after_a_single_yield():
    partitions = [TP(f"t{i}", 0) for i in range(40)]
    consumer = Assigned(partitions)
    loop = asyncio.get_running_loop()
    turns = 0

    def count_turn():
        nonlocal turns
        turns += 1
        if not task.done():
            loop.call_soon(count_turn)

    task = asyncio.ensure_future(livelock_check.verify_all_partitions_active(consumer))
    loop.call_soon(count_turn)
    await task
    assert sorted(consumer.checked) == sorted(partitions)
    assert turns <= 3  # Faust's own took a loop round trip (and a task) per partition


async def test_a_stopping_consumer_checks_nothing():
    consumer = Assigned([TP("t", 0)], should_stop=True)
    await livelock_check.verify_all_partitions_active(consumer)
    assert consumer.checked == []
