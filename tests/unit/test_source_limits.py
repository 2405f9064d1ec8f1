"""Bounds on import sources: inflation ratio and size checked while streaming, record length bounded."""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.executor.domain import CsvSplitter
from services.executor.errors import BadFile
from services.executor.importers.sources import GzipStream, SourceLimits
from shared.contracts.jobs import CsvFormat
from tests.conftest import examples

PIECE = 256 * 1024


def zeros_gzip(mib: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1 << 20)
    return b"".join(packer.compress(block) for _ in range(mib)) + packer.flush()


def inflate_all(stream: GzipStream, data: bytes, chunk: int = 64 * 1024) -> int:
    produced = 0
    for start in range(0, len(data), chunk):
        stream.push(data[start : start + chunk])
        while piece := stream.pull():
            produced += len(piece)
    return produced + len(stream.finish())


def test_a_gzip_bomb_is_refused_after_its_first_megabytes() -> None:
    stream = GzipStream("bomb.csv.gz", SourceLimits(), piece_size=PIECE)
    with pytest.raises(BadFile, match=r"bomb.csv.gz decompresses beyond the allowed ratio \(200:1\)"):
        inflate_all(stream, zeros_gzip(64))
    assert stream.meter.out_bytes <= (1 << 20) + PIECE  # not the 64 MiB the old floor let through


def test_the_ratio_counts_the_compressed_bytes_consumed_not_those_received() -> None:
    # One 64 KiB chunk of a bomb holds far more than 200 x 64 KiB: refused within that chunk.
    data = zeros_gzip(256)
    stream = GzipStream("bomb.gz", SourceLimits(), piece_size=PIECE)
    stream.push(data[: 64 * 1024])
    with pytest.raises(BadFile, match="ratio"):
        while stream.pull():
            pass
    assert stream.meter.out_bytes < 2 << 20


def test_the_decompressed_size_is_bounded_whatever_the_ratio() -> None:
    data = gzip.compress(os.urandom(3 << 20))  # incompressible: ratio about 1
    stream = GzipStream("big.gz", SourceLimits(max_decompressed_bytes=2 << 20), piece_size=PIECE)
    with pytest.raises(BadFile, match=r"big\.gz decompresses to more than 2,097,152 bytes"):
        inflate_all(stream, data)


def test_ordinary_gzip_members_inflate_whole_and_a_truncated_one_is_refused() -> None:
    text = b"".join(b"C%d,user%d@example.com,%d\n" % (n, n, n % 97) for n in range(50_000))
    data = gzip.compress(text[:1000]) + gzip.compress(text[1000:])  # two members
    assert inflate_all(GzipStream("ok.gz", SourceLimits(), piece_size=PIECE), data) == len(text)
    with pytest.raises(BadFile, match="truncated"):
        inflate_all(GzipStream("cut.gz", SourceLimits(), piece_size=PIECE), data[:-20])


def test_a_line_without_end_fails_at_the_bound_instead_of_growing() -> None:
    splitter = CsvSplitter(CsvFormat(), max_record_length=1 << 20)
    assert len(splitter.feed(b"id,email\nC1,a@x.io\n")) == 2
    fed = 0
    with pytest.raises(BadFile) as error:
        while fed < 8 << 20:  # the old splitter took all of it (quadratically) and failed nowhere
            splitter.feed(bytes(PIECE))
            fed += PIECE
    assert str(error.value) == (
        "the record at line 3 is longer than 1,048,576 characters (no line end, or an unclosed quote?)"
    )
    assert fed <= (1 << 20) + PIECE


def test_an_unclosed_quote_fails_naming_the_line_where_the_record_starts() -> None:
    splitter = CsvSplitter(CsvFormat(), max_record_length=4096)
    records = splitter.feed(b'id,note\n1,"never closed\n')
    with pytest.raises(BadFile, match="the record at line 2 is longer than 4,096 characters"):
        for _ in range(1000):
            records += splitter.feed(b"more text inside the quotes\n")
    assert [r.values for r in records] == [["id", "note"]]


LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r"])


@settings(max_examples=examples(60))
@given(
    lines=st.lists(st.tuples(st.integers(0, 120), LINE_ENDS), min_size=1, max_size=12),
    cuts=st.lists(st.integers(1, 400), min_size=1, max_size=30),
    limit=st.integers(20, 100),
)
def test_records_are_the_same_whatever_the_chunks_and_the_bound_holds(
    lines: list[tuple[int, str]], cuts: list[int], limit: int
) -> None:
    text = "".join(f"{n:03d}," + "x" * width + end for n, (width, end) in enumerate(lines))
    data = text.encode()
    splitter = CsvSplitter(CsvFormat(), max_record_length=limit)
    got: list[list[str]] = []
    position, index = 0, 0
    try:
        while position < len(data):
            size = cuts[index % len(cuts)]
            got += [r.values for r in splitter.feed(data[position : position + size])]
            position, index = position + size, index + 1
        got += [r.values for r in splitter.feed(b"", final=True)]
    except BadFile:
        assert any(4 + width + len(end) > limit for width, end in lines)
        return
    assert all(4 + width + len(end) <= limit for width, end in lines)
    assert got == list(csv.reader(io.StringIO(text, newline="")))
