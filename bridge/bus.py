"""An in-process message bus: events to many handlers, commands to exactly one.

Handlers are registered in one table at bootstrap (:func:`bridge.app.bootstrap`). An event
handler that fails is logged and counted, and the other handlers still run: a broken
broadcaster must not stop the bridge. A command has exactly one handler; its error reaches
the caller, and the events it returns are published on the bus.

Dispatch is awaited in place: when :meth:`MessageBus.publish` returns, every handler has
run, so a caller that has finished its last batch has drained the bus.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["CommandHandler", "EventHandler", "MessageBus"]

log = logging.getLogger("openspc.bus")

EventHandler = Callable[[Any], Awaitable[None] | None]
"""Takes one event; may be a plain or an async function."""

CommandHandler = Callable[[Any], Awaitable[Sequence[Any]]]
"""Takes one command; returns the events it caused (published after it returns)."""


class MessageBus:
    def __init__(
        self,
        event_handlers: Mapping[type, Sequence[EventHandler]] | None = None,
        command_handlers: Mapping[type, CommandHandler] | None = None,
    ) -> None:
        # each handler with whether it is a coroutine function, decided once
        self._events: dict[type, list[tuple[EventHandler, bool]]] = {}
        for kind, handlers in (event_handlers or {}).items():
            for handler in handlers:
                self.subscribe(kind, handler)
        self._commands: dict[type, CommandHandler] = dict(command_handlers or {})
        self.failures = 0

    def subscribe(self, kind: type, handler: EventHandler) -> None:
        is_async = inspect.iscoroutinefunction(handler)
        self._events.setdefault(kind, []).append((handler, is_async))

    def register(self, kind: type, handler: CommandHandler) -> None:
        if kind in self._commands:
            raise ValueError(f"{kind.__name__} already has a handler")
        self._commands[kind] = handler

    async def publish(self, events: Iterable[Any]) -> None:
        """Hand each event to each of its handlers, in order; isolate failures."""
        for event in events:
            for handler, is_async in self._events.get(type(event), ()):
                try:
                    result = handler(event)
                    if is_async or (result is not None and inspect.isawaitable(result)):
                        await result  # type: ignore[misc]  # awaitable: checked just above
                except Exception:
                    self.failures += 1
                    log.exception(
                        "handler %s failed on %s",
                        getattr(handler, "__qualname__", repr(handler)),
                        type(event).__name__,
                    )

    async def execute(self, command: Any) -> Sequence[Any]:
        """Run the command's handler; its exception propagates, its events are published."""
        handler = self._commands.get(type(command))
        if handler is None:
            raise LookupError(f"no handler for {type(command).__name__}")
        events = await handler(command)
        await self.publish(events)
        return events
