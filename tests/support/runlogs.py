"""Reading stored run log lines in tests: the lines of the chunks, each (run, seq) once."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection


async def stored_lines(
    chunks: AsyncCollection[dict[str, Any]], run_id: str | None = None
) -> list[tuple[str, int]]:
    """Every stored line as (run id, seq), sorted, a line stored twice counted once."""
    filter_ = {} if run_id is None else {"run_id": run_id}
    found = {(doc["run_id"], line["seq"]) async for doc in chunks.find(filter_) for line in doc["lines"]}
    return sorted(found)
