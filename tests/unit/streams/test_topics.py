"""Every topic is created with a time retention from the settings; sends held for a
rotation go in order; an API write (publish) returns once the broker has it, or says why
not."""

import asyncio

import faust
import pytest

from quotacache.errors import NotDelivered
from quotacache.settings import load_settings
from quotacache.streams.records import RefreshRequest
from quotacache.streams.topics import SendHealth, Topics


def test_data_topics_and_dead_letters_keep_data_retention_the_rest_request_retention():
    settings = load_settings(profiles=["cryptometer"], topic_prefix="p.",
                             broker={"data_retention": "3d", "request_retention": "2h"})
    topics = Topics(faust.App("t", broker="kafka://127.0.0.1:1"), settings)
    configs = topics.configs()
    assert set(configs) == set(topics.names())
    for name, config in configs.items():
        kept = name.startswith("p.data.") or name == "p.dead-letter"
        assert config == {"retention.ms": str(3 * 86400_000 if kept else 2 * 3600_000)}, name


def test_retention_defaults_are_a_week_and_a_day():
    broker = load_settings().broker
    assert (broker.data_retention, broker.request_retention) == (7 * 86400.0, 86400.0)
    assert broker.idempotence is True


def test_table_changelogs_ask_kafka_for_compaction_and_the_embedded_broker_for_rotation():
    from quotacache.app import build_app

    settings = load_settings(profiles=["cryptometer"])
    app = build_app(settings).app
    assert app.tables, "no tables"
    for table in app.tables.values():  # Faust creates them on Kafka with these configs
        assert table.changelog_topic.compacting is True, table.name
        assert not table.changelog_topic.deleting, table.name
    # Tansu applies neither: the worker re-creates its topics (quotacache/dev/rotation.py)
    assert settings.broker.embedded and settings.broker.rotate_records == 50_000


class Recorded:
    """A topic double: records what reaches it (``send`` returns no future)."""

    def __init__(self, name="t"):
        self.name, self.sent = name, []

    def get_topic_name(self):
        return self.name

    async def send(self, key, value):
        self.sent.append((key, value))


async def test_held_sends_wait_in_memory_and_go_in_order_on_release():
    settings = load_settings(profiles=["cryptometer"])
    topics = Topics(faust.App("t", broker="kafka://127.0.0.1:1"), settings)
    topic = Recorded()
    await topics._send(topic, "a", b"1")
    topics.hold()
    await topics._send(topic, "b", b"2")
    await topics._send(topic, "c", b"3")
    assert topic.sent == [("a", b"1")] and topics.holding
    assert await topics.release() == 2
    assert topic.sent == [("a", b"1"), ("b", b"2"), ("c", b"3")] and not topics.holding
    await topics._send(topic, "d", b"4")
    assert topic.sent[-1] == ("d", b"4")


class Acknowledged(Recorded):
    """A topic double whose sends return the broker's answer as a future: ``outcome``
    sets it (None: delivered, an exception: failed, "never": no answer)."""

    def __init__(self, outcome=None):
        super().__init__()
        self.outcome = outcome

    async def send(self, key, value):
        await super().send(key, value)
        answer = asyncio.get_running_loop().create_future()
        if isinstance(self.outcome, BaseException):
            answer.set_exception(self.outcome)
        elif self.outcome is None:
            answer.set_result("metadata")
        return answer


def request(symbol="BTC"):
    return RefreshRequest(service="cryptometer", endpoint="ticker", symbol=symbol)


def topics_for_publishing():
    return Topics(faust.App("t", broker="kafka://127.0.0.1:1"),
                  load_settings(profiles=["cryptometer"]))


async def test_publish_returns_once_the_broker_has_every_record():
    topics, topic = topics_for_publishing(), Acknowledged()
    await topics.publish(topic, {"k1": request("BTC"), "k2": request("ETH")})
    assert [key for key, _ in topic.sent] == ["k1", "k2"]
    assert topics.health.delivered == 2


async def test_publish_names_the_error_of_a_record_the_broker_refused():
    topics, topic = topics_for_publishing(), Acknowledged(RuntimeError("UnknownError"))
    with pytest.raises(NotDelivered, match="RuntimeError: UnknownError"):
        await topics.publish(topic, {"k": request()})


async def test_publish_gives_up_when_the_broker_does_not_answer_in_time():
    topics, topic = topics_for_publishing(), Acknowledged("never")
    with pytest.raises(NotDelivered, match="confirmed 0 of 1 records in 0.05 s"):
        await topics.publish(topic, {"k": request()}, timeout=0.05)


class Blocking(Recorded):
    """A producer whose buffer is full while the broker is away: the send itself waits."""

    async def send(self, key, value):
        await asyncio.Event().wait()


class Refusing(Recorded):
    async def send(self, key, value):
        raise RuntimeError("ProducerClosed")


async def test_publish_gives_up_on_a_send_that_blocks_within_the_same_timeout():
    with pytest.raises(NotDelivered, match="confirmed 0 of 2 records in 0.05 s"):
        await topics_for_publishing().publish(Blocking(), {"a": request("BTC"),
                                                           "b": request("ETH")}, timeout=0.05)


async def test_a_send_the_producer_refuses_at_once_is_not_delivered_with_its_reason():
    with pytest.raises(NotDelivered, match="RuntimeError: ProducerClosed"):
        await topics_for_publishing().publish(Refusing(), {"k": request()})


async def test_publish_refuses_at_once_while_sends_are_failing():
    topics, failing = topics_for_publishing(), Acknowledged(RuntimeError("down"))
    for _ in range(SendHealth.FAILING_AFTER):
        await topics._send(failing, "x", b"1")
    await asyncio.sleep(0)  # the delivery callbacks run
    topic = Acknowledged()
    with pytest.raises(NotDelivered, match="failing"):
        await topics.publish(topic, {"k": request()})
    assert topic.sent == []


async def test_a_publish_held_for_a_rotation_counts_as_published():
    topics, topic = topics_for_publishing(), Acknowledged("never")
    topics.hold()
    await topics.publish(topic, {"k": request()}, timeout=0.05)
    assert topic.sent == []
