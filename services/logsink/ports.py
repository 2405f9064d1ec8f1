from __future__ import annotations

from typing import Any, Protocol


class RunRecords(Protocol):
    async def apply(self, filter_: dict[str, Any], update: dict[str, Any], *, upsert: bool) -> None: ...

    async def add_log(self, document: dict[str, Any]) -> None: ...
