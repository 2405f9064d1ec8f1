"""A record's values written back as one line of its file, for the rejects a person reads.

Kept with each reject (cut to `RECORD_LIMIT` characters, marked when cut) so whoever fixes the
source sees what was refused without opening the file.
"""

from __future__ import annotations

from collections.abc import Sequence

RECORD_LIMIT = 1000


def clip_record(text: str) -> str:
    """At most `RECORD_LIMIT` characters; a cut record says so and how long it was."""
    if len(text) <= RECORD_LIMIT:
        return text
    return f"{text[:RECORD_LIMIT]}… [cut: {len(text):,} characters]"


def record_text(values: Sequence[str], delimiter: str, quote: str) -> str:
    """CSV values joined with the job's delimiter, quoted only where the file must have quoted them."""
    joined = delimiter.join(values)
    plain = joined.count(delimiter) == len(values) - 1
    if plain and quote not in joined and "\n" not in joined and "\r" not in joined:
        # The common case, a few C-level scans per record: it runs for every row of every import.
        return joined if len(joined) <= RECORD_LIMIT else clip_record(joined)
    return clip_record(delimiter.join(_quoted(value, delimiter, quote) for value in values))


def _quoted(value: str, delimiter: str, quote: str) -> str:
    if delimiter in value or quote in value or "\n" in value or "\r" in value:
        return quote + value.replace(quote, quote * 2) + quote
    return value


def hit_record_text(values: Sequence[str]) -> str:
    """A partner-feed (Adobe hit data) record: tab-separated, backslash escaping tab, newline, backslash."""
    escaped = (v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") for v in values)
    return clip_record("\t".join(escaped))
