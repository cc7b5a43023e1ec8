"""The Kafka client's repeated complaints are collapsed, with a count, on a clock the test
controls; every other logger's records pass untouched."""

import logging

from quotacache.streams.quiet_logs import MAX_KINDS, Repeats
from tests.unit.agents.harness import Clock


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_pass_once_per_period_then_say_how_many_were_held_back():
    clock = Clock()
    repeats = Repeats(every=10.0, clock=clock)
    passed = []
    for step in range(25):  # one a second, as aiokafka's retry loop would
        clock.now = 1000.0 + step
        rec = record("aiokafka.conn", "Unable connect to node with id %s: %s", 111, "refused")
        if repeats.filter(rec):
            passed.append((step, rec.getMessage()))
    assert [step for step, _ in passed] == [0, 10, 20]
    assert passed[0][1] == "Unable connect to node with id 111: refused"
    assert passed[1][1] == ("Unable connect to node with id 111: refused "
                            "(9 more like it in the last 10 s)")


def test_kinds_are_told_apart_by_logger_and_template():
    repeats = Repeats(every=10.0, clock=Clock())
    assert repeats.filter(record("aiokafka.conn", "Unable connect to node %s", 1))
    assert not repeats.filter(record("aiokafka.conn", "Unable connect to node %s", 2))
    assert repeats.filter(record("aiokafka.cluster", "Unable connect to node %s", 1))
    assert repeats.filter(record("aiokafka.conn", "Unable to update metadata from %s", 1))


def test_other_loggers_are_never_held_back():
    repeats = Repeats(every=10.0, clock=Clock())
    for _ in range(5):
        assert repeats.filter(record("quotacache.agents.fetch", "a fetch failed"))


def test_the_kinds_remembered_are_bounded():
    repeats = Repeats(every=10.0, clock=Clock())
    for n in range(3 * MAX_KINDS):
        repeats.filter(record("aiokafka.conn", f"formatted by the library {n}"))
    assert len(repeats._seen) <= MAX_KINDS


def test_every_handler_lets_the_first_of_a_kind_through():
    from quotacache.streams.quiet_logs import install

    class Kept(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    console, logfile = Kept(), Kept()
    install([console, logfile])
    rec = record("aiokafka.conn", "Unable connect to node with id %s", 111)
    for handler in (console, logfile):
        handler.handle(rec)
    assert console.messages == logfile.messages == ["Unable connect to node with id 111"]
