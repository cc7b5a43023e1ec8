"""Every topic is created with a time retention from the settings."""

import faust

from quotacache.settings import load_settings
from quotacache.streams.topics import Topics


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
