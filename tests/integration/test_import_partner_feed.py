"""Adobe Analytics data-feed deliveries: manifest, MD5 and record counts checked; lookups applied."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

from shared.contracts.runs import RunStatus
from tests.support.executor_harness import Harness

COLUMNS = [
    "hit_time_gmt",
    "post_visid_high",
    "post_visid_low",
    "visit_num",
    "page_url",
    "browser",
    "post_evar1",
]
HITS = [
    ["1704067200", "3000", "111", "1", "https://shop.example/home", "1", "spring"],
    ["1704067260", "3000", "111", "1", "https://shop.example/p?q=a\\\tb", "1", ""],  # escaped tab in the URL
    ["1704067300", "4000", "222", "2", "https://shop.example/cart", "2", "summer"],
    ["1704067400", "5000", "333", "1", "https://shop.example/multi\\\nline", "9", "x"],  # escaped newline
]


def tar_gz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def delivery(h: Harness, *, corrupt_md5: bool = False, total: int | None = None) -> None:
    lookups = tar_gz(
        {"column_headers.tsv": "\t".join(COLUMNS) + "\n", "browser.tsv": "1\tChrome 120\n2\tFirefox 121\n"}
    )
    hits = gzip.compress("".join("\t".join(h_) + "\n" for h_ in HITS).encode())
    names = {"lookup": "shop_2024-01-01-lookup_data.tar.gz", "hits": "01-shop_2024-01-01.tsv.gz"}
    h.write(f"feeds/{names['lookup']}", lookups)
    h.write(f"feeds/{names['hits']}", hits)
    md5 = hashlib.md5(hits).hexdigest()
    if corrupt_md5:
        md5 = "0" * 32
    manifest = (
        "Datafeed-Manifest-Version: 1.0\n"
        "\tLookup-Files: 1\n\tData-Files: 1\n"
        f"\tTotal-Records: {total if total is not None else len(HITS)}\n\n"
        f"Lookup-File: {names['lookup']}\n\tMD5-Digest: {hashlib.md5(lookups).hexdigest()}\n"
        f"\tFile-Size: {len(lookups)}\n\n"
        f"Data-File: {names['hits']}\n\tMD5-Digest: {md5}\n\tFile-Size: {len(hits)}\n\tRecord-Count: {len(HITS)}\n"
    )
    h.write("feeds/shop_2024-01-01.txt", manifest)


async def setup(h: Harness) -> dict[str, object]:
    await h.connection()
    fields = [
        {"name": "hit_time", "type": "integer", "required": True},
        {"name": "visitor", "type": "string", "required": True},
        {"name": "visit", "type": "integer"},
        {"name": "page", "type": "string"},
        {"name": "browser", "type": "string"},
        {"name": "campaign", "type": "string"},
    ]
    await h.table("hits", fields, primary_key=("hit_time", "visitor"))
    mapping = [("hit_time_gmt", "hit_time"), ("post_visid_high", "visitor"), ("visit_num", "visit"),
               ("page_url", "page"), ("browser", "browser"), ("post_evar1", "campaign")]  # fmt: skip
    return {
        "kind": "import",
        "source": {"kind": "adobe_analytics", "connection_id": 1, "manifest_path": "feeds/shop_*.txt"},
        "mapping": [{"column": c, "field": f} for c, f in mapping],
        "target": {"kind": "custom", "table": "hits", "mode": "merge"},
    }


async def test_a_delivery_is_checked_and_loaded_with_lookups_applied(harness: Harness) -> None:
    h = harness
    spec = await setup(h)
    delivery(h)
    run = await h.run(spec)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert run.data.counts.model_dump() == {"read": 4, "inserted": 4, "updated": 0, "rejected": 0,
                                            "unchanged": 0, "skipped": 0}  # fmt: skip
    assert await h.rows("hits", "hit_time") == [
        {"hit_time": 1704067200, "visitor": "3000", "visit": 1, "page": "https://shop.example/home",
         "browser": "Chrome 120", "campaign": "spring"},
        {"hit_time": 1704067260, "visitor": "3000", "visit": 1, "page": "https://shop.example/p?q=a\tb",
         "browser": "Chrome 120"},
        {"hit_time": 1704067300, "visitor": "4000", "visit": 2, "page": "https://shop.example/cart",
         "browser": "Firefox 121", "campaign": "summer"},
        {"hit_time": 1704067400, "visitor": "5000", "visit": 1, "page": "https://shop.example/multi\nline",
         "browser": "9", "campaign": "x"},
    ]  # fmt: skip
    logs = h.events.logs(run.data.run_id)
    assert any("MD5 digests and record counts match the manifest" in line for line in logs)


async def test_a_wrong_md5_or_record_count_fails_before_loading(harness: Harness) -> None:
    h = harness
    spec = await setup(h)
    delivery(h, corrupt_md5=True)
    run = await h.run(spec)
    assert run.data.status == RunStatus.FAILED
    assert "MD5 of 01-shop_2024-01-01.tsv.gz is" in (run.data.error or "")
    delivery(h, total=5)
    counted = await h.run(spec)
    assert counted.data.error == "manifest Total-Records is 5, the data files hold 4"
    assert await h.rows("hits", "hit_time") == []
