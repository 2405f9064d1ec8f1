"""Hypothesis scenarios of imports: a table, its state before the run, a file and a job spec.

Keys come from small pools so files repeat keys and hit (or miss, or collide with) seeded records.
A list record's `RIID_` is only known once seeded: cells hold `§riid:N` (the N-th seeded list record)
or `§riid:xN` (an `RIID_` no record has), resolved by `resolve`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from shared.catalog_records import LIST_SYSTEM_FIELDS
from shared.contracts.jobs import FieldType, TableField
from tests.model.import_files import FileFormat, Line
from tests.model.import_model import Table
from tests.model.import_values_strategies import (
    DATE_FORMATS,
    TIMESTAMP_FORMATS,
    alphabet,
    cell,
    text,
)

RIID_TOKEN = "§riid:"
EMAILS = tuple(f"user{i}@example.com" for i in range(6))
CIDS = tuple(f"C{i}" for i in range(6))
MOBILES = tuple(f"+4179000000{i}" for i in range(6))
POOLS = {"EMAIL_ADDRESS_": EMAILS, "CUSTOMER_ID_": CIDS, "MOBILE_NUMBER_": MOBILES}
KEY_POOLS = {
    FieldType.STRING: ("k0", "k1", "a,b", 'q"1', "k;4", "Ünï"),
    FieldType.INTEGER: tuple(str(i) for i in range(1, 7)),
    FieldType.EMAIL: EMAILS,
    FieldType.PHONE: MOBILES,
}
HEADERS = ("id", "Key", "name", "e-mail", "Score", "birth date", "a;b", "Ünï", 'x"y', "col,9", "note")
ENCODINGS = (("utf-8", "utf-8"), ("utf-8", "utf-8-sig"), ("utf-8-sig", "utf-8-sig"), ("latin-1", "latin-1"),
             ("utf-16", "utf-16"), ("cp1252", "cp1252"))  # fmt: skip
LIST_MATCHES = (("EMAIL_ADDRESS_",), ("CUSTOMER_ID_",), ("MOBILE_NUMBER_",), ("RIID_",),
                ("EMAIL_ADDRESS_", "CUSTOMER_ID_"), ("EMAIL_ADDRESS_", "MOBILE_NUMBER_"),
                ("CUSTOMER_ID_", "MOBILE_NUMBER_"))  # fmt: skip
EXTRA = "§extra"  # the file's unmapped column


@dataclass(frozen=True)
class Scenario:
    mode: str  # list | extension | merge | append | overwrite
    table: Table
    target: dict[str, Any]  # the spec's target without the table name
    mapping: tuple[tuple[str, str, str | None], ...]  # column, field, date_format
    columns: tuple[str, ...]
    lines: tuple[Line, ...]
    fmt: FileFormat
    seed: tuple[dict[str, str], ...] = ()  # records of the table before the run (field → cell)
    parent: Table | None = None
    parent_seed: tuple[dict[str, str], ...] = ()
    guards: dict[str, float] = field(default_factory=dict)
    batch_size: int = 1000
    in_flight: int = 2


def resolve(value: str, riids: list[int]) -> str:
    if not value.startswith(RIID_TOKEN):
        return value
    index = value.removeprefix(RIID_TOKEN)
    if index.startswith("x"):
        return str(max(riids, default=0) + 1000 + int(index[1:]))
    return str(riids[int(index)])


@st.composite
def file_format(draw: st.DrawFn) -> FileFormat:
    encoding, codec = draw(st.sampled_from(ENCODINGS))
    return FileFormat(
        delimiter=draw(st.sampled_from((",", ";", "\t", "|"))), quote=draw(st.sampled_from(('"', "'"))),
        encoding=encoding, codec=codec, newline=draw(st.sampled_from(("\n", "\r\n"))),
        header=draw(st.sampled_from((True, True, True, False))), trailing_newline=draw(st.booleans()),
        gzip=draw(st.sampled_from((False, False, True))),
    )  # fmt: skip


@st.composite
def user_fields(draw: st.DrawFn, prefix: str, most: int = 3) -> tuple[TableField, ...]:
    fields = []
    for i in range(draw(st.integers(1, most))):
        kind = draw(st.sampled_from(list(FieldType)))
        limit = draw(st.sampled_from((None, None, 3, 8))) if kind is FieldType.STRING else None
        required = draw(st.sampled_from((False,) * 5 + (True,)))
        fields.append(TableField(name=f"{prefix}{i}", type=kind, required=required, max_length=limit))
    return tuple(fields)


def _date_format(draw: st.DrawFn, definition: TableField) -> str | None:
    if definition.type is FieldType.DATE:
        return draw(st.sampled_from(DATE_FORMATS))
    if definition.type is FieldType.TIMESTAMP:
        return draw(st.sampled_from(TIMESTAMP_FORMATS))
    return None


def _key_cell(draw: st.DrawFn, name: str, definition: TableField, seeded: int, chars: str) -> str:
    """A key or match cell: mostly from the pool, sometimes empty or bad."""
    choice = draw(st.sampled_from(("pool",) * 8 + ("empty", "bad")))
    if choice == "empty":
        return ""
    if name == "RIID_":
        if choice == "bad":
            return "abc"
        hits = [f"{RIID_TOKEN}{i}" for i in range(seeded)]
        return draw(st.sampled_from([*hits, f"{RIID_TOKEN}x1", f"{RIID_TOKEN}x2"]))
    if choice == "bad":
        return draw(cell(definition, chars, None, empty=False))
    value = draw(st.sampled_from(POOLS.get(name) or KEY_POOLS[definition.type]))
    return value.upper() if definition.type is FieldType.EMAIL and draw(st.booleans()) else value


@st.composite
def _file(draw: st.DrawFn, fmt: FileFormat, table: Table, mapped: list[str], keys: tuple[str, ...],
          seeded: int, extra_fields: dict[str, TableField] | None = None) -> dict[str, Any]:  # fmt: skip
    """Mapping, columns and lines of a file holding `mapped` fields (keys first)."""
    chars = alphabet(fmt.codec)
    definitions = {**{f.name: f for f in table.fields}, **(extra_fields or {})}
    names = draw(st.permutations(HEADERS))[: len(mapped) + 1]  # slot i: mapped[i]; the last: unmapped
    formats = {name: _date_format(draw, definitions[name]) for name in mapped}
    order = draw(st.permutations(range(len(names))))  # the file's columns, by slot
    columns = [names[slot] if fmt.header else str(j + 1) for j, slot in enumerate(order)]
    column_of = {name: columns[order.index(i)] for i, name in enumerate(mapped)}
    lines = []
    for number in range(draw(st.integers(0 if fmt.header else 1, 10))):
        kinds = ("data",) * 8 + ("blank", "ragged") if number or fmt.header else ("data",)
        kind = draw(st.sampled_from(kinds))
        if kind == "blank":
            lines.append(Line(None))
            continue
        by_slot = [
            _key_cell(draw, name, definitions[name], seeded, chars) if name in keys
            else draw(cell(definitions[name], chars, formats[name]))
            for name in mapped
        ]  # fmt: skip
        wide = draw(st.sampled_from((1,) * 6 + (300, 1500)))  # long records cross read-chunk boundaries
        by_slot.append(draw(text(chars, 40) | st.just("")) * wide)
        cells = tuple(by_slot[slot] for slot in order)
        if kind == "ragged":
            cells = (*cells, "more") if draw(st.booleans()) or len(cells) < 3 else cells[:-1]
        lines.append(
            Line(cells, quoted=draw(st.sampled_from((False,) * 4 + (True,))), ragged=kind == "ragged")
        )
    mapping = tuple((column_of[name], name, formats[name]) for name in mapped)
    return {"mapping": mapping, "columns": tuple(columns), "lines": tuple(lines)}


def _seed_cells(draw: st.DrawFn, fields: tuple[TableField, ...], chars: str) -> dict[str, str]:
    return {f.name: draw(cell(f, chars, None, empty=not f.required, bad=False)) for f in fields}


def _options(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "batch_size": draw(st.sampled_from((1, 2, 3, 1000))),
        "in_flight": draw(st.sampled_from((1, 2, 4))),
    }


def _list_members(
    draw: st.DrawFn, count: int, users: tuple[TableField, ...], chars: str
) -> tuple[dict[str, str], ...]:
    """`count` list records, each with its own e-mail address, customer id and mobile number."""
    emails, cids, mobiles = (draw(st.permutations(range(len(EMAILS)))) for _ in range(3))
    return tuple(
        {"EMAIL_ADDRESS_": EMAILS[emails[i]], "CUSTOMER_ID_": CIDS[cids[i]], "MOBILE_NUMBER_": MOBILES[mobiles[i]],
         **_seed_cells(draw, users, chars)}
        for i in range(count)
    )  # fmt: skip


@st.composite
def list_scenarios(draw: st.DrawFn) -> Scenario:
    fmt = draw(file_format())
    users = draw(user_fields("F"))
    table = Table("T", "list", LIST_SYSTEM_FIELDS + users)
    seed = _list_members(draw, draw(st.integers(0, 5)), users, alphabet("latin-1"))
    matches = draw(st.sampled_from(LIST_MATCHES))
    mapped = [*matches, *draw(st.lists(st.sampled_from([f.name for f in users]), unique=True))]
    target = {"kind": "list", "match_columns": list(matches), "insert_on_no_match": draw(st.booleans()),
              "update_on_match": draw(st.sampled_from(("replace_all", "no_update")))}  # fmt: skip
    file = draw(_file(fmt, table, mapped, matches, len(seed)))
    return Scenario("list", table, target, fmt=fmt, seed=seed, **file, **_options(draw))


@st.composite
def extension_scenarios(draw: st.DrawFn) -> Scenario:
    fmt = draw(file_format())
    chars = alphabet("latin-1")
    parent = Table("P", "list", LIST_SYSTEM_FIELDS)
    members = _list_members(draw, draw(st.integers(1, 5)), (), chars)
    users = draw(user_fields("X"))
    table = Table("T", "profile_extension", (LIST_SYSTEM_FIELDS[0], *users))
    seeded = draw(st.lists(st.integers(0, len(members) - 1), unique=True))
    seed = tuple({"RIID_": f"{RIID_TOKEN}{i}", **_seed_cells(draw, users, chars)} for i in seeded)
    column = draw(st.sampled_from(("RIID_", *POOLS)))
    mapped = [column, *draw(st.lists(st.sampled_from([f.name for f in users]), unique=True))]
    list_fields = {f.name: f for f in LIST_SYSTEM_FIELDS}
    file = draw(_file(fmt, table, mapped, (column,), len(members), list_fields))
    target = {"kind": "profile_extension", "match_column": column}
    return Scenario("extension", table, target, fmt=fmt, seed=seed, parent=parent, parent_seed=members,
                    **file, **_options(draw))  # fmt: skip


@st.composite
def custom_scenarios(draw: st.DrawFn, mode: str) -> Scenario:
    fmt = draw(file_format())
    chars = alphabet("latin-1")
    key_types = st.sampled_from(list(KEY_POOLS))
    keys = tuple(
        TableField(name=f"K{i}", type=draw(key_types), required=True) for i in range(draw(st.integers(1, 2)))
    )
    others = draw(user_fields("V"))
    table = Table("T", "custom", keys + others, primary_key=tuple(k.name for k in keys))
    seed_keys = draw(
        st.lists(st.tuples(*(st.sampled_from(KEY_POOLS[k.type]) for k in keys)), unique=True, max_size=5)
    )
    seed = tuple({**{k.name: v for k, v in zip(keys, values, strict=True)}, **_seed_cells(draw, others, chars)}
                 for values in seed_keys)  # fmt: skip
    mapped = [*table.primary_key, *draw(st.lists(st.sampled_from([f.name for f in others]), unique=True))]
    file = draw(_file(fmt, table, mapped, table.primary_key, 0))
    guards: dict[str, float] = {}
    if mode != "append" and draw(st.booleans()):
        guards["max_reject_percent"] = draw(st.sampled_from((0, 10, 25, 50, 100)))
    if mode == "overwrite" and draw(st.booleans()):
        guards["max_shrink_percent"] = draw(st.sampled_from((0, 20, 50, 100)))
    target = {"kind": "custom", "mode": mode}
    return Scenario(mode, table, target, fmt=fmt, seed=seed, guards=guards, **file, **_options(draw))
