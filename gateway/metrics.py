"""Prometheus metrics of one gateway process, kept in their own registry."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """Executions by capability, door and status; durations; open connections; bus health; LLM usage."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.executions = Counter(
            "gateway_executions_total",
            "Executions by capability, door and final status",
            ["capability", "door", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gateway_execution_duration_seconds",
            "Execution duration by capability and door",
            ["capability", "door"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "gateway_executions_in_flight", "Executions running now", ["door"], registry=self.registry
        )
        self.connections = Gauge(
            "gateway_open_connections", "Open client connections per door", ["door"], registry=self.registry
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_total",
            "Calls refused by the rate limiter",
            ["door"],
            registry=self.registry,
        )
        self.bus_queue_depth = Gauge(
            "gateway_bus_queue_depth", "Events waiting in subscriber queues", registry=self.registry
        )
        self.bus_dropped = Gauge(
            "gateway_bus_dropped_events",
            "Events dropped because a subscriber fell behind (cumulative)",
            registry=self.registry,
        )
        self.bus_healthy = Gauge(
            "gateway_bus_healthy",
            "1 when the event bus (Redis, if configured) is reachable",
            registry=self.registry,
        )

        # -- LLM usage (gateway/llm): every HTTP attempt, every answer's tokens and price ------------
        self.llm_requests = Counter(
            "gateway_llm_requests_total",
            "Model HTTP attempts by model and outcome (ok, rate_limited, server_error, connection_error, "
            "timeout, error, cancelled)",
            ["model", "status"],
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            "gateway_llm_tokens_total",
            "Model tokens by model and kind (prompt, completion)",
            ["model", "kind"],
            registry=self.registry,
        )
        self.llm_cost = Counter(
            "gateway_llm_cost_usd_total",
            "Model spend in US dollars by model (0 for models without an offline price)",
            ["model"],
            registry=self.registry,
        )
        # -- end LLM usage -------------------------------------------------------------------------------

    def bind_bus(self, depth: Callable[[], float], dropped: Callable[[], float], healthy: Callable[[], bool]) -> None:
        """Read the bus gauges at scrape time."""
        self.bus_queue_depth.set_function(depth)
        self.bus_dropped.set_function(dropped)
        self.bus_healthy.set_function(lambda: 1.0 if healthy() else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
