"""Prometheus metrics of one gateway process, kept in their own registry.

prometheus_client (~20 ms to import, http.server and wsgiref with it) loads when a metric is first
touched, usually the first execution, or when the background work of `Gateway.ready()` builds it:
`gateway lsp` answers the editor's initialize without it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]  # CONTENT_TYPE_LATEST too, through __getattr__


def __getattr__(name: str) -> str:
    """`CONTENT_TYPE_LATEST`, the exposition content type, imported on first use."""
    if name == "CONTENT_TYPE_LATEST":
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return CONTENT_TYPE_LATEST
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Collectors:
    """The collectors themselves, built together in one registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


class Metrics:
    """Executions by capability, door and status; durations; open connections; bus health; LLM usage.

    The collectors are built on first use (see the module docstring); open connections are counted
    without them until then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: _Collectors | None = None
        self._bus: tuple[Callable[[], float], Callable[[], float], Callable[[], bool]] | None = None
        self._open: dict[str, int] = {}  # connections counted before the collectors exist

    @property
    def _c(self) -> _Collectors:
        built = self._built
        if built is None:
            with self._lock:  # once, even when the warm-up thread and the loop race
                if self._built is None:
                    self._built = self._build()
                built = self._built
        return built

    def _build(self) -> _Collectors:
        c = _Collectors()
        if self._bus is not None:
            _bind_bus(c, *self._bus)
        for door, count in self._open.items():
            c.connections.labels(door).set(count)
        return c

    def build(self) -> None:
        """Build the collectors now (background warm-up) rather than at first use."""
        _ = self._c

    @property
    def registry(self) -> CollectorRegistry:
        return self._c.registry

    @property
    def executions(self) -> Counter:
        return self._c.executions

    @property
    def duration(self) -> Histogram:
        return self._c.duration

    @property
    def in_flight(self) -> Gauge:
        return self._c.in_flight

    @property
    def connections(self) -> Gauge:
        return self._c.connections

    @property
    def rate_limited(self) -> Counter:
        return self._c.rate_limited

    @property
    def bus_queue_depth(self) -> Gauge:
        return self._c.bus_queue_depth

    @property
    def bus_dropped(self) -> Gauge:
        return self._c.bus_dropped

    @property
    def bus_healthy(self) -> Gauge:
        return self._c.bus_healthy

    @property
    def llm_requests(self) -> Counter:
        return self._c.llm_requests

    @property
    def llm_tokens(self) -> Counter:
        return self._c.llm_tokens

    @property
    def llm_cost(self) -> Counter:
        return self._c.llm_cost

    def connection_opened(self, door: str) -> None:
        """One more open connection on `door` (counted without building the collectors)."""
        self._connection(door, 1)

    def connection_closed(self, door: str) -> None:
        self._connection(door, -1)

    def _connection(self, door: str, delta: int) -> None:
        with self._lock:
            if self._built is None:
                self._open[door] = self._open.get(door, 0) + delta
                return
        self._built.connections.labels(door).inc(delta)

    def bind_bus(self, depth: Callable[[], float], dropped: Callable[[], float], healthy: Callable[[], bool]) -> None:
        """Read the bus gauges at scrape time."""
        with self._lock:
            self._bus = (depth, dropped, healthy)
            built = self._built
        if built is not None:
            _bind_bus(built, depth, dropped, healthy)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self._c.registry)


def _bind_bus(
    c: _Collectors, depth: Callable[[], float], dropped: Callable[[], float], healthy: Callable[[], bool]
) -> None:
    c.bus_queue_depth.set_function(depth)
    c.bus_dropped.set_function(dropped)
    c.bus_healthy.set_function(lambda: 1.0 if healthy() else 0.0)
