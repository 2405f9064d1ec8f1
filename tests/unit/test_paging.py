"""Links of a page (issue #19): the request's filters kept (repeated ones too), null at the ends."""

from __future__ import annotations

from fastapi import Response
from starlette.requests import Request

from services.catalog.api.paging import MAX_OFFSET, Pager


def pager(query: str) -> Pager:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/runs",
        "query_string": query.encode(),
        "headers": [],
    }
    return Pager(Request(scope), Response())


def test_links_keep_every_filter_and_the_header_says_the_same() -> None:
    paging = pager("status=failed&status=partial&offset=3&limit=2&sort=-requested_at")
    page = paging.page(["a", "b"], total=9, offset=3, limit=2)
    assert page.next == "/api/v1/runs?status=failed&status=partial&sort=-requested_at&offset=5&limit=2"
    assert page.prev == "/api/v1/runs?status=failed&status=partial&sort=-requested_at&offset=1&limit=2"
    assert paging.response.headers["Link"] == f'<{page.next}>; rel="next", <{page.prev}>; rel="prev"'


def test_the_ends_have_no_link() -> None:
    only = pager("limit=5")
    page = only.page(["a", "b"], total=2, offset=0, limit=5)
    assert (page.next, page.prev) == (None, None) and "Link" not in only.response.headers
    last = pager("offset=4&limit=2").page(["e"], total=5, offset=4, limit=2)
    assert last.next is None and last.prev == "/api/v1/runs?offset=2&limit=2"
    beyond = pager(f"offset={MAX_OFFSET}&limit=2").page(
        ["x"], total=MAX_OFFSET + 10, offset=MAX_OFFSET, limit=2
    )
    assert beyond.next is None  # its offset would be refused
