"""Splitting a byte stream into CSV records, free of I/O.

Records are split on line ends outside quotes, so a quoted field may hold newlines and the line
number of every record (where it starts in the file) is known for the rejects file.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass

from services.executor.errors import BadFile
from shared.contracts.jobs import CsvFormat

LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")
MAX_RECORD_LENGTH = 4 << 20  # characters of one record (all its lines); beyond it the file is refused


@dataclass(frozen=True)
class CsvRecord:
    line: int  # line number in the file where the record starts (1-based, header included)
    values: list[str]


class CsvSplitter:
    """Turns byte chunks into complete CSV records, keeping line numbers."""

    def __init__(self, fmt: CsvFormat, *, max_record_length: int = MAX_RECORD_LENGTH) -> None:
        self.fmt = fmt
        self.max_record_length = max_record_length
        self._decoder = codecs.getincrementaldecoder(_python_encoding(fmt.encoding))(errors="strict")
        self._partial: list[str] = []  # pieces of a last line without its line end, joined once it ends
        self._partial_length = 0
        self._pending: list[str] = []  # physical lines of a record not yet closed
        self._pending_length = 0
        self._inside_quotes = False
        self._next_line = 1
        self._record_start = 1
        self._first = True
        self.blank_lines = 0  # skipped: not records (a run reports them as `skipped`)

    def feed(self, chunk: bytes, *, final: bool = False) -> list[CsvRecord]:
        try:
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            # Bytes the decoder held back from the previous chunk are not counted: a line ends in "\n".
            line = self._next_line + chunk[: max(exc.start, 0)].count(b"\n")
            raise BadFile(f"file is not valid {self.fmt.encoding} at line {line}: {exc.reason}") from exc
        if self._first and text:
            text = text.removeprefix("\ufeff")  # byte-order mark
            self._first = False
        complete: list[tuple[int, str]] = []
        for physical in self._lines(text, final):
            if not self._pending:
                self._record_start = self._next_line
            self._pending.append(physical)
            self._pending_length += len(physical)
            self._check_length(0)
            self._next_line += 1
            if physical.count(self.fmt.quote) % 2:
                self._inside_quotes = not self._inside_quotes
            if not self._inside_quotes:
                complete.append((self._record_start, "".join(self._pending)))
                self._pending, self._pending_length = [], 0
        if final and self._pending:
            complete.append((self._record_start, "".join(self._pending)))
            self._pending, self._pending_length = [], 0
        self._check_length(self._partial_length)
        return self._parse(complete)

    def _lines(self, text: str, final: bool) -> list[str]:
        """Complete physical lines; a last line without "\n" is kept for the next chunk."""
        ends_in_cr = bool(self._partial) and self._partial[-1].endswith("\r")
        if not final and not ends_in_cr and "\n" not in text and "\r" not in text:
            # No line end: keep the piece without rescanning what came before (a long line stays linear).
            self._partial.append(text)
            self._partial_length += len(text)
            return []
        lines = LINE.findall("".join(self._partial) + text)
        self._partial, self._partial_length = [], 0
        # A last line without "\n" may continue in the next chunk (even "\r" may be half of "\r\n").
        if lines and not final and not lines[-1].endswith("\n"):
            last = lines.pop()
            self._partial, self._partial_length = [last], len(last)
        return lines

    def _check_length(self, unfinished: int) -> None:
        """A record longer than the bound is a bad file, not something to accumulate."""
        if self._pending_length + unfinished <= self.max_record_length:
            return
        line = self._record_start if self._pending else self._next_line
        raise BadFile(
            f"the record at line {line} is longer than {self.max_record_length:,} characters "
            "(no line end, or an unclosed quote?)"
        )

    def _parse(self, texts: list[tuple[int, str]]) -> list[CsvRecord]:
        kept = [(line, text) for line, text in texts if text.strip("\r\n")]  # empty lines are skipped
        self.blank_lines += len(texts) - len(kept)
        # One reader over all complete records of the chunk: each text is exactly one record.
        reader = csv.reader(
            (text for _, text in kept), delimiter=self.fmt.delimiter, quotechar=self.fmt.quote
        )
        try:
            return [CsvRecord(line, values) for (line, _), values in zip(kept, reader, strict=True)]
        except (csv.Error, ValueError) as exc:
            raise BadFile(
                f"the file cannot be read as CSV near line {kept[0][0] if kept else 0}: {exc}"
            ) from exc


def _python_encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError as exc:
        raise BadFile(f"unknown encoding '{name}'") from exc
