"""Date tokens in import paths: `in/contacts_{date:%Y%m%d}.csv`, `{date}`, `{date-1d:%Y-%m-%d}`.

Pure (no I/O): parsed and checked when a job is saved, rendered by the executor with the run's date
(the schedule slot, else the request time, in the job's time zone), and turned into a glob that
matches the path "with any date" (`if_missing: newest`).

Grammar of a token: `{date[±N(d|h|w)][:FORMAT]}`, N from 1 to 999. FORMAT is literal letters, digits,
`-`, `_`, `.` and the directives of `DIRECTIVES`; `{date}` is `{date:%Y%m%d}`. Every other `{` or `}`
is an error, so a typo never reaches a run as a literal file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.errors import ValidationFailed

# Directive → the glob that matches what it renders (digits only: one file name per date).
DIRECTIVES = {
    "Y": "[0-9][0-9][0-9][0-9]",
    "y": "[0-9][0-9]",
    "m": "[0-9][0-9]",
    "d": "[0-9][0-9]",
    "j": "[0-9][0-9][0-9]",
    "H": "[0-9][0-9]",
    "M": "[0-9][0-9]",
}
DEFAULT_FORMAT = "%Y%m%d"
MAX_OFFSET = 999
UNIT_DELTA = {"d": timedelta(days=1), "h": timedelta(hours=1), "w": timedelta(weeks=1)}
_TOKEN = re.compile(r"\{([^{}]*)\}")
_BODY = re.compile(r"^date(?:(?P<sign>[+-])(?P<count>[0-9]+)(?P<unit>[a-z]))?(?::(?P<format>.*))?$", re.S)
_LITERAL = re.compile(r"^[A-Za-z0-9_.-]$")


@dataclass(frozen=True)
class DateToken:
    text: str  # as written, braces included (error messages name it)
    offset: int  # in `unit`s, signed
    unit: str  # d, h or w
    format: str

    def render(self, at: datetime) -> str:
        return self.moved(at).strftime(self.format)

    def moved(self, at: datetime) -> datetime:
        """`at` (aware, in the job's zone) moved by the offset: days and weeks on the calendar (wall
        time kept across a daylight-saving change), hours in elapsed time."""
        if not self.offset:
            return at
        delta = UNIT_DELTA[self.unit] * self.offset
        if self.unit == "h":
            return (at.astimezone(ZoneInfo("UTC")) + delta).astimezone(at.tzinfo)
        return (at.replace(tzinfo=None) + delta).replace(tzinfo=at.tzinfo)

    def glob(self) -> str:
        out, i = [], 0
        while i < len(self.format):
            if self.format[i] == "%":
                out.append(DIRECTIVES[self.format[i + 1]])
                i += 2
            else:
                out.append(self.format[i])
                i += 1
        return "".join(out)


@dataclass(frozen=True)
class DatedPath:
    """A path split into literal text and date tokens (`parts` alternate: str, DateToken, str …)."""

    parts: tuple[str | DateToken, ...]

    @property
    def has_tokens(self) -> bool:
        return any(isinstance(p, DateToken) for p in self.parts)

    def render(self, at: datetime) -> str:
        return "".join(p if isinstance(p, str) else p.render(at) for p in self.parts)

    def any_date_glob(self) -> str:
        """The path with each token a wildcard of its width: matches every date's file."""
        return "".join(p if isinstance(p, str) else p.glob() for p in self.parts)

    def tokens_in_name_only(self) -> bool:
        """No token before the last `/` (the SFTP glob takes wildcards in the file name only)."""
        seen_slash_after = False
        for part in reversed(self.parts):
            if isinstance(part, str):
                seen_slash_after = seen_slash_after or "/" in part
            elif seen_slash_after:
                return False
        return True


def parse_path(path: str, field: str = "path") -> DatedPath:
    """The path's literal text and tokens; `ValidationFailed` naming the token and `field` otherwise."""
    parts: list[str | DateToken] = []
    position = 0
    for match in _TOKEN.finditer(path):
        literal = path[position : match.start()]
        _no_stray_brace(literal, field)
        parts += [literal, _token(match.group(0), match.group(1), field)]
        position = match.end()
    tail = path[position:]
    _no_stray_brace(tail, field)
    parts.append(tail)
    return DatedPath(tuple(p for p in parts if p != ""))


def render_path(path: str, at: datetime) -> str:
    return parse_path(path).render(at)


def run_date(moment: datetime, zone: str) -> datetime:
    """The instant the run's tokens read (`moment`, aware) in the job's zone."""
    return moment.astimezone(ZoneInfo(zone))


def _no_stray_brace(literal: str, field: str) -> None:
    for brace in "{}":
        if brace in literal:
            raise ValidationFailed(
                f"{field}: unmatched '{brace}' in the path; date tokens look like {{date:%Y%m%d}}",
                field=field,
            )


def _token(text: str, body: str, field: str) -> DateToken:
    match = _BODY.match(body)
    if match is None:
        raise ValidationFailed(
            f"{field}: unknown token {text}; the known one is {{date}}, e.g. {{date-1d:%Y-%m-%d}}",
            field=field,
        )
    unit, count = match.group("unit") or "d", int(match.group("count") or 0)
    if match.group("sign") and (unit not in UNIT_DELTA or not 1 <= count <= MAX_OFFSET):
        raise ValidationFailed(
            f"{field}: bad offset in token {text}; give ±N followed by d, h or w, N from 1 to {MAX_OFFSET}",
            field=field,
        )
    fmt = match.group("format")
    if fmt is None:
        fmt = DEFAULT_FORMAT
    _check_format(text, fmt, field)
    offset = -count if match.group("sign") == "-" else count
    return DateToken(text, offset, unit, fmt)


def _check_format(text: str, fmt: str, field: str) -> None:
    allowed = " ".join(f"%{d}" for d in DIRECTIVES)
    if not fmt:
        raise ValidationFailed(f"{field}: empty format in token {text}", field=field)
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in DIRECTIVES:
                directive = fmt[i : i + 2]
                raise ValidationFailed(
                    f"{field}: bad format in token {text}: '{directive}' is not one of {allowed}", field=field
                )
            i += 2
        elif _LITERAL.match(fmt[i]):
            i += 1
        else:
            raise ValidationFailed(
                f"{field}: bad format in token {text}: '{fmt[i]}' is not allowed "
                "(letters, digits, '-', '_', '.' and the directives)",
                field=field,
            )
    if "%" not in fmt:
        raise ValidationFailed(f"{field}: bad format in token {text}: it has no date directive", field=field)
