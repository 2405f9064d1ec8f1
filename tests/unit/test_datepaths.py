"""Date tokens in import paths (`shared/datepaths.py`): examples, errors naming the token, and a reference
model written from the rules (docs/partner-files.md) checked against the module with Hypothesis."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.datepaths import parse_path, render_path, run_date
from shared.errors import ValidationFailed

PARIS = ZoneInfo("Europe/Paris")
AT = datetime(2026, 12, 7, 2, 30, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("in/contacts_{date}.csv", "in/contacts_20261207.csv"),
        ("in/contacts_{date:%Y%m%d}.csv", "in/contacts_20261207.csv"),
        ("in/{date:%Y}/c_{date-1d:%Y-%m-%d}.csv", "in/2026/c_2026-12-06.csv"),
        ("c_{date+2w:%y%m%d}_{date-3h:%H%M}.csv", "c_261221_2330.csv"),
        ("c_{date:%j}.csv", "c_341.csv"),
        ("plain/*.csv", "plain/*.csv"),
    ],
)
def test_render(path: str, rendered: str) -> None:
    assert render_path(path, AT) == rendered


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("c_{time}.csv", "unknown token {time}"),
        ("c_{Date}.csv", "unknown token {Date}"),
        ("c_{date:%Q}.csv", "bad format in token {date:%Q}: '%Q' is not one of"),
        ("c_{date:%}.csv", "bad format in token {date:%}"),
        ("c_{date:%Y/%m}.csv", "bad format in token {date:%Y/%m}: '/' is not allowed"),
        ("c_{date:}.csv", "empty format in token {date:}"),
        ("c_{date:abc}.csv", "bad format in token {date:abc}: it has no date directive"),
        ("c_{date-1x}.csv", "bad offset in token {date-1x}"),
        ("c_{date-0d}.csv", "bad offset in token {date-0d}"),
        ("c_{date+1000d}.csv", "bad offset in token {date+1000d}"),
        ("c_{date.csv", "unmatched '{'"),
        ("c_date}.csv", "unmatched '}'"),
    ],
)
def test_errors_name_the_token_and_the_field(path: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_path(path, field="spec.source.path")
    assert message in caught.value.message
    assert caught.value.field == "spec.source.path"
    assert caught.value.message.startswith("spec.source.path: ")


def test_days_keep_the_wall_time_across_a_dst_change_hours_do_not() -> None:
    after_change = datetime(2026, 3, 29, 12, 0, tzinfo=PARIS)  # clocks went forward at 02:00
    assert render_path("{date-1d:%d%H}", after_change) == "2812"
    assert render_path("{date-24h:%d%H}", after_change) == "2811"


def test_the_run_date_is_the_moment_in_the_jobs_zone() -> None:
    slot = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)  # already the 8th in Tokyo
    assert render_path("c_{date}.csv", run_date(slot, "Asia/Tokyo")) == "c_20261208.csv"
    assert render_path("c_{date}.csv", run_date(slot, "UTC")) == "c_20261207.csv"


def test_any_date_glob_and_where_the_tokens_are() -> None:
    path = parse_path("in/c_{date:%Y-%m-%d}_{date-1h:%H}.csv")
    assert path.any_date_glob() == "in/c_[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]_[0-9][0-9].csv"
    assert path.tokens_in_name_only()
    assert not parse_path("in/{date}/c.csv").tokens_in_name_only()
    assert not parse_path("in/c.csv").has_tokens


# --- reference model ---------------------------------------------------------------------------------

MODEL_DIRECTIVES = {  # what each directive writes, by the rules, without strftime
    "Y": lambda d: f"{d.year:04d}",
    "y": lambda d: f"{d.year % 100:02d}",
    "m": lambda d: f"{d.month:02d}",
    "d": lambda d: f"{d.day:02d}",
    "j": lambda d: f"{(d.date() - date(d.year, 1, 1)).days + 1:03d}",
    "H": lambda d: f"{d.hour:02d}",
    "M": lambda d: f"{d.minute:02d}",
}
pieces = st.one_of(
    st.sampled_from(sorted(MODEL_DIRECTIVES)).map(lambda d: ("%", d)),
    st.sampled_from(list("abXZ09-_.")).map(lambda c: ("lit", c)),
)
zones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"])
moments = st.datetimes(
    min_value=datetime(2000, 1, 3), max_value=datetime(2090, 12, 28), timezones=st.just(UTC)
)


def model_moved(local: datetime, sign: str, count: int, unit: str) -> datetime:
    n = -count if sign == "-" else count
    if unit == "h":
        return (local.astimezone(UTC) + timedelta(hours=n)).astimezone(local.tzinfo)
    days = n * (7 if unit == "w" else 1)
    wall = datetime.combine(local.date() + timedelta(days=days), local.time())
    return wall.replace(tzinfo=local.tzinfo)


@settings(max_examples=300, deadline=None)
@given(
    moment=moments,
    zone=zones,
    offset=st.one_of(
        st.none(), st.tuples(st.sampled_from("+-"), st.integers(1, 999), st.sampled_from("dhw"))
    ),
    fmt=st.one_of(st.none(), st.lists(pieces, min_size=1, max_size=6)),
    prefix=st.sampled_from(["", "in/", "in/x_"]),
)
def test_rendering_matches_the_reference_model(
    moment: datetime,
    zone: str,
    offset: tuple[str, int, str] | None,
    fmt: list[tuple[str, str]] | None,
    prefix: str,
) -> None:
    if fmt is not None and not any(kind == "%" for kind, _ in fmt):
        fmt = [*fmt, ("%", "d")]
    fmt_text = None if fmt is None else "".join(p if k == "lit" else f"%{p}" for k, p in fmt)
    token = (
        "{date" + ("".join(map(str, offset)) if offset else "") + (f":{fmt_text}" if fmt_text else "") + "}"
    )
    local = moment.astimezone(ZoneInfo(zone))
    moved = model_moved(local, *offset) if offset else local
    expected_pieces = fmt or [("%", "Y"), ("%", "m"), ("%", "d")]
    expected = "".join(p if k == "lit" else MODEL_DIRECTIVES[p](moved) for k, p in expected_pieces)
    path = f"{prefix}{token}.csv"
    assert render_path(path, run_date(moment, zone)) == f"{prefix}{expected}.csv"
    # The any-date glob matches what every date renders
    import fnmatch

    assert fnmatch.fnmatchcase(f"{prefix}{expected}.csv", parse_path(path).any_date_glob())


@settings(max_examples=200, deadline=None)
@given(body=st.text(alphabet="date+-:%Ymdjx0123456789hw/ {", min_size=0, max_size=14))
def test_anything_else_is_refused_naming_the_token(body: str) -> None:
    """A token parses only when it follows the grammar; when refused, the message quotes it."""
    path = "c_{" + body + "}.csv"
    try:
        parsed = parse_path(path, field="spec.source.path")
    except ValidationFailed as exc:
        assert exc.field == "spec.source.path"
        if "{" not in body:
            assert "{" + body + "}" in exc.message
        return
    assert parsed.has_tokens and body.startswith("date")
