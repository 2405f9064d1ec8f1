"""Cells for a field of a given type: mostly valid, sometimes empty, sometimes bad (Hypothesis)."""

from __future__ import annotations

import string
from datetime import datetime

from hypothesis import strategies as st

from shared.contracts.jobs import FieldType, TableField

ASCII = string.ascii_letters + string.digits + " .-_"
SPECIAL = ",;|\t\"'\n"
LATIN1 = "éüßÅ"
UNICODE = "€漢😀"
DATE_FORMATS = (None, "%d/%m/%Y", "%Y%m%d", "%m-%d-%Y")
TIMESTAMP_FORMATS = (None, "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M")
_BAD = {
    FieldType.INTEGER: ("4.5", "abc", "1e3", "12a"),
    FieldType.NUMBER: ("abc", "1.2.3", "--1", "1,5"),
    FieldType.BOOLEAN: ("maybe", "2", "yes?"),
    FieldType.DATE: ("2024-13-45", "notadate", "31/31/2024"),
    FieldType.TIMESTAMP: ("yesterday", "2024-02-30T10:00:00", "12:00"),
    FieldType.EMAIL: ("nope", "a@", "@x.io", "a b@x.io"),
    FieldType.PHONE: ("abc", "12ab", "+41-79-abc"),
}


def alphabet(codec: str) -> str:
    wide = codec.startswith(("utf-8", "utf-16"))
    return ASCII + SPECIAL + LATIN1 + (UNICODE if wide else "")


def text(chars: str, max_size: int = 12) -> st.SearchStrategy[str]:
    """Text without leading or trailing white space (values are trimmed, a rule tested apart)."""
    return st.text(alphabet=chars, min_size=1, max_size=max_size).map(str.strip).filter(bool)


def valid_cell(definition: TableField, chars: str, date_format: str | None) -> st.SearchStrategy[str]:
    kind = definition.type
    if kind is FieldType.INTEGER:
        return st.integers(-(10**9), 10**9).map(str)
    if kind is FieldType.NUMBER:
        return st.builds(
            lambda a, b: f"{a}.{b:02d}", st.integers(-(10**6), 10**6), st.integers(0, 99)
        ) | st.integers(-1000, 1000).map(str)
    if kind is FieldType.BOOLEAN:
        return st.sampled_from(("true", "false", "TRUE", "False"))
    if kind is FieldType.DATE:
        return st.dates(datetime(2000, 1, 1).date(), datetime(2030, 12, 31).date()).map(
            lambda d: d.strftime(date_format or "%Y-%m-%d")
        )
    if kind is FieldType.TIMESTAMP:
        return _timestamps(date_format)
    if kind is FieldType.EMAIL:
        local = st.text(alphabet=string.ascii_letters + string.digits + "._+", min_size=1, max_size=8)
        domain = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=6)
        return st.builds(lambda a, b: f"{a}@{b}.io", local, domain)
    if kind is FieldType.PHONE:
        return st.integers(10**7, 10**12 - 1).map(lambda n: f"+{n}")
    return text(chars, definition.max_length or 12)


def _timestamps(date_format: str | None) -> st.SearchStrategy[str]:
    instants = st.datetimes(datetime(2000, 1, 1), datetime(2030, 12, 31)).map(
        lambda d: d.replace(microsecond=0)
    )
    if date_format is not None:
        return instants.map(lambda d: d.strftime(date_format))
    offsets = st.sampled_from(("", "Z", "+02:00", "-05:30"))
    return st.builds(lambda d, o: d.strftime("%Y-%m-%dT%H:%M:%S") + o, instants, offsets)


def bad_cell(definition: TableField, chars: str) -> st.SearchStrategy[str] | None:
    if definition.type in _BAD:
        return st.sampled_from(_BAD[definition.type])
    if definition.max_length is not None:
        limit = definition.max_length
        return st.integers(1, 4).map(lambda extra: "x" * (limit + extra))
    return None


@st.composite
def cell(draw: st.DrawFn, definition: TableField, chars: str, date_format: str | None,
         *, empty: bool = True, bad: bool = True) -> str:  # fmt: skip
    """A cell for `definition`: valid (most), empty or bad."""
    choice = draw(st.sampled_from(("valid",) * 6 + ("empty",) * empty + ("bad",) * bad))
    bad_values = bad_cell(definition, chars) if choice == "bad" else None
    if choice == "empty":
        return ""
    if bad_values is not None:
        return str(draw(bad_values))
    padding: str = draw(st.sampled_from(("",) * 5 + (" ",)))  # values are trimmed
    value: str = draw(valid_cell(definition, chars, date_format))
    return padding + value + padding
