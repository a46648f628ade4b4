"""Prometheus metrics of one edge: its own registry, so several apps can live in one process."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bus.client import Bus
    from http_edge.cache import RegistryCache

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class BusCollector(Collector):
    """Counters read from the bus objects at scrape time, and the sizes the edge last saw.

    `buses` are every connection of this process: the edge's, and in `govbus up` the workers'.
    """

    def __init__(self, buses: Sequence[Bus]) -> None:
        self.buses = list(buses)
        self.registry_size: int | None = None
        self.inventory_size: int | None = None

    def collect(self) -> Iterator[Metric]:
        published = CounterMetricFamily(
            "govbus_events_published", "Events published (confirmed), by source", labels=["source"]
        )
        consumed = CounterMetricFamily(
            "govbus_events_consumed", "Events handled, by worker queue", labels=["queue"]
        )
        retried = CounterMetricFamily(
            "govbus_events_retried", "Event deliveries retried, by worker queue", labels=["queue"]
        )
        dead = CounterMetricFamily(
            "govbus_events_dead_lettered", "Events dead-lettered, by worker queue", labels=["queue"]
        )
        for bus in self.buses:
            published.add_metric([bus.source], bus.publisher.published)
            for consumer in bus.consumers:
                consumed.add_metric([consumer.queue], consumer.stats.handled)
                retried.add_metric([consumer.queue], consumer.stats.retried)
                dead.add_metric([consumer.queue], consumer.stats.dead_lettered)
        yield from (published, consumed, retried, dead)
        for name, value, text in (
            ("govbus_registry_instances", self.registry_size, "Instances in the registry"),
            ("govbus_inventory_resources", self.inventory_size, "Resources in the inventory"),
        ):
            if value is not None:
                gauge = GaugeMetricFamily(name, text + " (as of the last scrape)")
                gauge.add_metric([], value)
                yield gauge


class CacheCollector(Collector):
    """The registry cache's counters, read at scrape time."""

    def __init__(self, cache: RegistryCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        cache = self.cache
        for name, value, text in (
            ("govbus_edge_cache_events", cache.events, "Registry events the edge's cache received"),
            ("govbus_edge_cache_fetches", cache.fetches, "RPCs the edge made for registry reads"),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], value)
            yield counter
        watchers = GaugeMetricFamily("govbus_edge_blocking_reads", "Blocking reads waiting now")
        watchers.add_metric([], cache.watchers)
        yield watchers


class EdgeMetrics:
    """The edge's metrics: HTTP requests by route and status, RPC latency, bus counters."""

    def __init__(self, buses: Sequence[Bus]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "govbus_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "govbus_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rpc_latency = Histogram(
            "govbus_rpc_seconds",
            "Latency of RPC calls made by the edge, by method and outcome",
            ["method", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bus_collector = BusCollector(buses)
        self.registry.register(self.bus_collector)

    def watch(self, cache: RegistryCache) -> None:
        self.registry.register(CacheCollector(cache))
