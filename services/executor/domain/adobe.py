"""Adobe Analytics data-feed deliveries: the manifest, the hit-data TSV dialect and lookups.

A delivery is a manifest (`<rsid>_<date>.txt`) naming lookup files (`*-lookup_data.tar.gz` holding
`column_headers.tsv`, `browser.tsv` …, or single `.tsv.gz` lookups) and hit-data files (`*.tsv.gz`,
no header: the column names come from `column_headers.tsv`), each with its MD5 digest and size, the
hit-data files with their record count, and the delivery's total record count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.executor.errors import BadFile

ESCAPED = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class FeedFile:
    name: str
    md5: str
    size: int | None
    records: int | None


@dataclass(frozen=True)
class Manifest:
    version: str
    lookup_files: tuple[FeedFile, ...]
    data_files: tuple[FeedFile, ...]
    total_records: int | None
    extra: dict[str, str] = field(default_factory=dict)


def parse_manifest(text: str) -> Manifest:
    sections: list[tuple[str, str, dict[str, str]]] = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        key, sep, value = raw.strip().partition(":")
        if not sep:
            raise BadFile(f"manifest line is not 'Key: value': {raw.strip()[:80]!r}")
        if raw[:1] in (" ", "\t"):
            if not sections:
                raise BadFile("manifest starts with an indented line")
            sections[-1][2][key.strip()] = value.strip()
        else:
            sections.append((key.strip(), value.strip(), {}))
    if not sections or sections[0][0] != "Datafeed-Manifest-Version":
        raise BadFile("not an Adobe Analytics data-feed manifest (no Datafeed-Manifest-Version)")
    _, version, header = sections[0]
    lookups = tuple(_feed_file(name, attrs) for kind, name, attrs in sections[1:] if kind == "Lookup-File")
    data = tuple(_feed_file(name, attrs) for kind, name, attrs in sections[1:] if kind == "Data-File")
    declared = {"Lookup-Files": len(lookups), "Data-Files": len(data)}
    for key, found in declared.items():
        if key in header and _int(header[key], key) != found:
            raise BadFile(f"manifest declares {header[key]} {key} but lists {found}")
    total = _int(header["Total-Records"], "Total-Records") if "Total-Records" in header else None
    if not data:
        raise BadFile("manifest lists no data files")
    return Manifest(version, lookups, data, total, header)


def _feed_file(name: str, attrs: dict[str, str]) -> FeedFile:
    if not name or "/" in name or name.startswith("."):
        raise BadFile(f"manifest names an invalid file {name!r}")
    md5 = attrs.get("MD5-Digest", "").lower()
    if not re.fullmatch(r"[0-9a-f]{32}", md5):
        raise BadFile(f"manifest gives no valid MD5-Digest for {name}")
    size = _int(attrs["File-Size"], "File-Size") if "File-Size" in attrs else None
    records = _int(attrs["Record-Count"], "Record-Count") if "Record-Count" in attrs else None
    return FeedFile(name, md5, size, records)


def _int(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadFile(f"manifest {key} is not a number: {value!r}") from None


def split_hit_line(line: str) -> list[str]:
    """One hit-data record: tab-separated; a backslash escapes tab, newline and backslash."""
    if "\\" not in line:
        return line.split("\t")
    values, current, i = [], [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            current.append({"t": "\t", "n": "\n"}.get(nxt, nxt))
            i += 2
            continue
        if ch == "\t":
            values.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    values.append("".join(current))
    return values


def record_continues(line: str) -> bool:
    """A physical line ending in an odd number of backslashes continues on the next line."""
    stripped = line.rstrip("\\")
    return (len(line) - len(stripped)) % 2 == 1


def parse_lookup(text: str) -> dict[str, str]:
    """`id<TAB>value` lines of a lookup file."""
    table: dict[str, str] = {}
    for line in text.splitlines():
        if line:
            key, _, value = line.partition("\t")
            table[key] = value
    return table


def parse_column_headers(text: str) -> list[str]:
    first = text.splitlines()[0] if text.strip() else ""
    columns = [c.strip() for c in first.split("\t")]
    if not first or not all(columns):
        raise BadFile("column_headers.tsv of the delivery is empty")
    return columns
