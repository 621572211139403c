"""Resumable SSE for 2025-era HTTP sessions (SEP-1699): each session keeps its recent stream events.

With an event store the SDK's transport starts every SSE stream with a priming event (an id and empty
data, plus the `retry` hint), numbers every event, and answers a GET with `Last-Event-ID` by replaying
what followed on that stream. Stream ids are the client's request ids, which repeat across sessions, so
each session gets a store of its own (one shared store would mix two sessions' stream "1"). The store is
bounded in events and bytes; an event pushed out can no longer be resumed from, and the client then
starts over, as after any lost stream.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections import OrderedDict

from mcp.server.streamable_http import (
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp_types import JSONRPCMessage

log = logging.getLogger("gateway.mcp")

MAX_EVENTS = 512
MAX_BYTES = 2 * 1024 * 1024
RETRY_MILLISECONDS = 1000
"""The SSE `retry` hint: how long a client waits before resuming a dropped stream."""


class SessionEventStore(EventStore):
    """The recent events of one session's SSE streams, oldest dropped first beyond the bounds."""

    def __init__(self, max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: OrderedDict[str, tuple[str, JSONRPCMessage | None, int]] = OrderedDict()
        self._bytes = 0
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        """Keep `message` (None: a stream's priming event) and return its new, unguessable event id."""
        event_id = f"{self._prefix}-{next(self._counter)}"
        size = 0 if message is None else len(message.model_dump_json(by_alias=True, exclude_unset=True))
        self._events[event_id] = (stream_id, message, size)
        self._bytes += size
        while self._events and (len(self._events) > self.max_events or self._bytes > self.max_bytes):
            _, (_, _, dropped) = self._events.popitem(last=False)
            self._bytes -= dropped
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        """Send the events that followed `last_event_id` on its stream; None when it is unknown or dropped."""
        entry = self._events.get(last_event_id)
        if entry is None:
            return None
        stream_id = entry[0]
        after = False
        for event_id, (stream, message, _) in list(self._events.items()):
            if after and stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
            elif event_id == last_event_id:
                after = True
        return stream_id
