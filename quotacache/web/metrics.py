"""``GET /metrics``: the stats, limits and strategies in Prometheus text format.

A custom collector reads the live figures at scrape time (prometheus_client renders
them), so nothing is counted twice and no metric object outlives its worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from faust import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from quotacache.policy.strategy import Strategy
from quotacache.runtime import Runtime
from quotacache.tables.stats import FIELDS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class QuotacacheCollector:
    def __init__(self, rt: Runtime):
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        for field in FIELDS:
            family = CounterMetricFamily(f"quotacache_{field}", f"{field} on this worker",
                                         labels=["service", "endpoint"])
            for name, counts in rt.stats.by_endpoint.items():
                service, _, endpoint = name.partition("/")
                family.add_metric([service, endpoint], counts[field])
            yield family
        strategy = GaugeMetricFamily("quotacache_strategy",
                                     "1 for the current strategy of each service",
                                     labels=["service", "strategy"])
        for service in rt.settings.services:
            current = rt.control.strategy(service).strategy
            for option in Strategy:
                strategy.add_metric([service, option.value], float(option.value == current))
        yield strategy
        used = GaugeMetricFamily("quotacache_limit_used", "calls in the limit's window",
                                 labels=["scope", "limit"])
        allowed = GaugeMetricFamily("quotacache_limit_allowance",
                                    "calls allowed in the limit's window",
                                    labels=["scope", "limit"])
        now = rt.clock()
        for service in rt.settings.services:
            if rt.owns(service):
                for row in rt.limiter.usage(service, now):
                    used.add_metric([row["scope"], row["limit"]], row["used"])
                    allowed.add_metric([row["scope"], row["limit"]], row["allowance"])
        yield used
        yield allowed
        yield GaugeMetricFamily("quotacache_monitored_symbols", "monitored symbols",
                                value=len(rt.control.monitored_endpoints()))


def render(rt: Runtime, registry: Any = None) -> bytes:
    registry = registry or CollectorRegistry()
    registry.register(QuotacacheCollector(rt))
    return generate_latest(registry)


def register(rt: Runtime) -> None:
    @rt.app.page("/metrics")
    class MetricsView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            response = self.bytes(render(rt), content_type="text/plain")
            response.headers["Content-Type"] = CONTENT_TYPE  # with the exposition version
            return response
