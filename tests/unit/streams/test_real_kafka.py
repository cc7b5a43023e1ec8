"""The Faust app on real Kafka gets the idempotent producer and topic creation that waits
until Kafka serves the topic; on the embedded broker, Faust's own transport."""

from faust.transport.drivers.aiokafka import Transport

from quotacache.app import build_app
from quotacache.settings import load_settings
from quotacache.streams.real_kafka import IdempotentKafkaTransport, KafkaTransport


def app_for(tmp_path, **broker):
    settings = load_settings(profiles=["cryptometer"], data_dir=str(tmp_path), broker=broker)
    return build_app(settings).app


def test_real_kafka_gets_the_idempotent_producer(tmp_path):
    app = app_for(tmp_path, url="kafka://127.0.0.1:1")
    assert type(app.transport) is IdempotentKafkaTransport
    extra = app.producer._settings_extra()
    assert extra["enable_idempotence"] is True and extra["acks"] == "all"


def test_idempotence_can_be_turned_off_and_topics_still_wait_to_be_served(tmp_path):
    app = app_for(tmp_path, url="kafka://127.0.0.1:1", idempotence=False)
    assert type(app.transport) is KafkaTransport
    assert "enable_idempotence" not in app.producer._settings_extra()


def test_the_embedded_broker_keeps_fausts_transport(tmp_path):
    app = app_for(tmp_path, url="embedded")  # Tansu cannot start an idempotent producer
    assert type(app.transport) is Transport
    assert "enable_idempotence" not in app.producer._settings_extra()
