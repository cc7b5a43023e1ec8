"""What the workers ask of a real Kafka that the embedded broker cannot give.

* Kafka's idempotent producer (``broker.idempotence``). Faust 0.15 turns aiokafka's
  ``enable_idempotence`` on only inside exactly-once transactions and has no setting for
  it alone; this transport's producer asks for it. The broker then drops a batch that a
  producer retry (a lost acknowledgement, a broker restart) sends twice, and keeps each
  partition's records in send order. Tansu has no InitProducerId: an idempotent producer
  cannot even start there (docs/BROKERS.md).
* Topics that are served before they are used. Kafka answers CreateTopics before its
  broker serves the new partitions (on 2 busy cores ~60 ms a partition: seconds for the
  ~130 partitions of a worker's first start). A worker that joined its consumer group
  meanwhile was assigned none of the partitions of Faust's changelog topics and never
  became ready. So after creating a topic, Faust's declaration waits until the broker's
  metadata lists it with a leader for every partition. Tansu lists a topic at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver
from mode import Service

from quotacache.settings import Settings

log = logging.getLogger(__name__)

#: How long a topic Faust created may take to be served (then the worker goes on).
SERVED_TIMEOUT = 60.0


class IdempotentProducer(driver.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        # aiokafka requires acks="all" with idempotence (Faust's default acks is -1).
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class KafkaTransport(driver.Transport):
    """Faust's aiokafka transport, whose topic creation waits until Kafka serves the topic."""

    async def _really_create_topic(self, owner: Service, client: aiokafka.AIOKafkaClient,
                                   topic: str, partitions: int, replication: int,
                                   **kwargs: Any) -> None:
        await super()._really_create_topic(owner, client, topic, partitions, replication,
                                           **kwargs)
        await served(client, topic, partitions)


class IdempotentKafkaTransport(KafkaTransport):
    Producer = IdempotentProducer


async def served(client: aiokafka.AIOKafkaClient, topic: str, partitions: int,
                 timeout: float = SERVED_TIMEOUT) -> bool:
    """Wait until ``client``'s metadata lists ``topic`` with a leader for each partition."""
    deadline = time.monotonic() + timeout
    await client.add_topic(topic)
    while True:
        leaders = [client.cluster.leader_for_partition(aiokafka.TopicPartition(topic, p))
                   for p in range(partitions)]
        if all(leader is not None and leader >= 0 for leader in leaders):
            return True
        if time.monotonic() > deadline:
            log.warning("Kafka does not serve topic %s %.0f s after creating it", topic,
                        timeout)
            return False
        await asyncio.sleep(0.25)  # aiokafka logs an error for each miss
        await client.force_metadata_update()


def configure_for_kafka(app: faust.App, settings: Settings) -> None:
    """Set ``app`` up for a real Kafka (before it starts); nothing for the embedded broker."""
    if settings.broker.embedded:
        return
    transport = IdempotentKafkaTransport if settings.broker.idempotence else KafkaTransport
    app.transport = transport(app.conf.broker_consumer, app)
