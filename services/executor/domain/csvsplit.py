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


@dataclass(frozen=True)
class CsvRecord:
    line: int  # line number in the file where the record starts (1-based, header included)
    values: list[str]


class CsvSplitter:
    """Turns byte chunks into complete CSV records, keeping line numbers."""

    def __init__(self, fmt: CsvFormat) -> None:
        self.fmt = fmt
        self._decoder = codecs.getincrementaldecoder(_python_encoding(fmt.encoding))(errors="strict")
        self._partial_line = ""
        self._pending: list[str] = []  # physical lines of a record not yet closed
        self._inside_quotes = False
        self._next_line = 1
        self._record_start = 1
        self._first = True

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
        lines = LINE.findall(self._partial_line + text)
        # A last line without "\n" may continue in the next chunk (even "\r" may be half of "\r\n").
        self._partial_line = lines.pop() if lines and not final and not lines[-1].endswith("\n") else ""
        complete: list[tuple[int, str]] = []
        for line in lines:
            if not self._pending:
                self._record_start = self._next_line
            self._pending.append(line)
            self._next_line += 1
            if line.count(self.fmt.quote) % 2:
                self._inside_quotes = not self._inside_quotes
            if not self._inside_quotes:
                complete.append((self._record_start, "".join(self._pending)))
                self._pending = []
        if final and self._pending:
            complete.append((self._record_start, "".join(self._pending)))
            self._pending = []
        return self._parse(complete)

    def _parse(self, texts: list[tuple[int, str]]) -> list[CsvRecord]:
        kept = [(line, text) for line, text in texts if text.strip("\r\n")]  # empty lines are skipped
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
