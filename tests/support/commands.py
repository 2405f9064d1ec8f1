"""A PyMongo command listener for tests that count the database commands a piece of work sends."""

from __future__ import annotations

from collections import Counter

from pymongo import monitoring


class Commands(monitoring.CommandListener):
    """Every command the client sends, as (name, collection)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        collection = event.command.get(event.command_name)
        self.seen.append((event.command_name, collection if isinstance(collection, str) else ""))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...

    def take(self) -> Counter[tuple[str, str]]:
        """The commands seen since the last take, counted."""
        seen, self.seen = Counter(self.seen), []
        return seen
