"""Links of a paged list: `next` and `prev` in the body and in an RFC 8288 `Link` header, as relative URLs
that keep the request's filters, null at the ends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response

from services.catalog.schemas import Page

T = TypeVar("T")

MAX_LIMIT = 500  # a larger `limit` is a 422, as is an offset past MAX_OFFSET
MAX_OFFSET = 1_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")]


@dataclass(frozen=True)
class Pager:
    request: Request
    response: Response

    def page(self, items: Sequence[T], total: int, offset: int, limit: int) -> Page[T]:
        """An offset page: `next` while items remain after it, `prev` unless it starts the list."""
        more = offset + len(items) < total and offset + limit <= MAX_OFFSET  # a link is never a 422
        following = self.link(offset=offset + limit, limit=limit) if more else None
        preceding = self.link(offset=max(0, offset - limit), limit=limit) if offset > 0 else None
        self.advertise(following, preceding)
        return Page(
            items=list(items), total=total, offset=offset, limit=limit, next=following, prev=preceding
        )

    def link(self, **changes: object) -> str:
        """This request's URL with `changes` to its query (a None value drops that parameter)."""
        kept = [(key, value) for key, value in self.request.query_params.multi_items() if key not in changes]
        changed = [(key, str(value)) for key, value in changes.items() if value is not None]
        return f"{self.request.url.path}?{urlencode(kept + changed)}"

    def advertise(self, following: str | None, preceding: str | None = None) -> None:
        links = [f'<{url}>; rel="{rel}"' for rel, url in (("next", following), ("prev", preceding)) if url]
        if links:
            self.response.headers["Link"] = ", ".join(links)


def pager(request: Request, response: Response) -> Pager:
    return Pager(request, response)


Paging = Annotated[Pager, Depends(pager)]
