"""Logical file records → the bytes of a delimited file, with the formatting choices a real file has.

The writer knows where each record starts, so the expected records (and their line numbers) are known
without parsing what it wrote.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass

from tests.model.import_model import FileRecord


@dataclass(frozen=True)
class FileFormat:
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"  # the spec's encoding
    codec: str = "utf-8"  # what the file is written in (e.g. utf-8-sig: a BOM under "utf-8")
    newline: str = "\n"
    header: bool = True
    trailing_newline: bool = True
    gzip: bool = False


@dataclass(frozen=True)
class Line:
    """A line of the file: a record's cells (quoted where needed, or always when `quoted`), or blank."""

    cells: tuple[str, ...] | None  # None: a blank line
    quoted: bool = False
    ragged: bool = False  # the cells are one too many or too few for the header


@dataclass(frozen=True)
class RenderedFile:
    data: bytes
    records: list[FileRecord]
    blank_lines: int


def render(fmt: FileFormat, columns: Sequence[str], lines: Sequence[Line]) -> RenderedFile:
    """`columns` name the cells of each record (header row when `fmt.header`, else positions)."""
    text: list[str] = []
    records: list[FileRecord] = []
    line_number = 1
    if fmt.header:
        text.append(_row(fmt, columns, quoted=False))
        line_number += 1 + _embedded_newlines(columns)
    blanks = 0
    for line in lines:
        if line.cells is None:
            text.append("")
            blanks += 1
            line_number += 1
            continue
        cells = None if line.ragged else dict(zip(columns, line.cells, strict=True))
        records.append(FileRecord(line_number, cells))
        text.append(_row(fmt, line.cells, quoted=line.quoted))
        line_number += 1 + _embedded_newlines(line.cells)
    if lines and lines[-1].cells is None and not fmt.trailing_newline:
        blanks -= 1  # "record\n" + "": the last blank line is only the record's line end
    body = fmt.newline.join(text) + (fmt.newline if fmt.trailing_newline else "")
    data = body.encode(fmt.codec)
    return RenderedFile(gzip.compress(data) if fmt.gzip else data, records, blanks)


def _row(fmt: FileFormat, cells: Sequence[str], *, quoted: bool) -> str:
    return fmt.delimiter.join(_cell(fmt, cell, quoted) for cell in cells)


def _cell(fmt: FileFormat, cell: str, quoted: bool) -> str:
    special = fmt.delimiter in cell or fmt.quote in cell or "\n" in cell or "\r" in cell
    if quoted or special:
        return fmt.quote + cell.replace(fmt.quote, fmt.quote * 2) + fmt.quote
    return cell


def _embedded_newlines(cells: Sequence[str]) -> int:
    return sum(cell.count("\n") for cell in cells)


def is_blank_when_rendered(cells: Sequence[str]) -> bool:
    """A one-column record with an empty cell would render as a blank line: generators avoid it."""
    return len(cells) == 1 and cells[0] == ""
