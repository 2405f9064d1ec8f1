"""Hypothesis strategies for the export model tests: tables as the executor stores them, filters and specs.

No tests here; `test_export_model.py` draws from these.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from shared.contracts.jobs import FieldType, TableField
from tests.model.export_model import CHANGED_AT, ModelTable

_names = itertools.count(1)
BASE = datetime(2024, 1, 1, tzinfo=UTC)
SPECIAL = ",;|\t\"'\n\r=+-@ "
UNICODE = "éø漢字😀Ω"


@dataclass(frozen=True)
class Case:
    tables: dict[str, ModelTable]
    spec: dict[str, Any]  # an export spec; SFTP cases get their destination from `sftp`
    sftp: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Changes:
    inserted: dict[str, ModelTable]  # new rows only, per table
    updates: list[tuple[str, dict[str, Any], dict[str, Any]]]  # (table, filter, $set)
    after: Case


LIST_FIELDS = (
    TableField(name="FIRST_NAME", type=FieldType.STRING),
    TableField(name="SCORE", type=FieldType.INTEGER),
    TableField(name="BALANCE", type=FieldType.NUMBER),
    TableField(name="VIP", type=FieldType.BOOLEAN),
    TableField(name="BIRTHDAY", type=FieldType.DATE),
    TableField(name="SEEN_AT", type=FieldType.TIMESTAMP),
)
PREFS_FIELDS = (
    TableField(name="COLOR", type=FieldType.STRING),
    TableField(name="SIZE", type=FieldType.INTEGER),
)
PETS_FIELDS = (TableField(name="PET", type=FieldType.STRING), TableField(name="ADOPTED", type=FieldType.DATE))
PRODUCT_FIELDS = (
    TableField(name="SKU", type=FieldType.STRING, required=True),
    TableField(name="REGION", type=FieldType.STRING, required=True),
    TableField(name="QTY", type=FieldType.INTEGER),
    TableField(name="PRICE", type=FieldType.NUMBER),
    TableField(name="ACTIVE", type=FieldType.BOOLEAN),
    TableField(name="ADDED", type=FieldType.DATE),
    TableField(name="NOTE", type=FieldType.STRING),
)


def texts(alphabet: str = "abcXYZ019" + SPECIAL + UNICODE) -> st.SearchStrategy[str]:
    """Strings as an import stores them: stripped and never empty."""
    return st.text(alphabet, min_size=1, max_size=8).map(str.strip).filter(bool)


def values_of(ftype: FieldType) -> st.SearchStrategy[Any]:
    days = st.integers(0, 3000).map(lambda d: BASE + timedelta(days=d - 1500))
    return {
        FieldType.STRING: texts(),
        FieldType.INTEGER: st.integers(-10_000, 10_000),
        FieldType.NUMBER: st.integers(-100_000, 100_000).map(lambda c: c / 100)
        | st.sampled_from([3.0, -3.0]),
        FieldType.BOOLEAN: st.booleans(),
        FieldType.DATE: days,
        FieldType.TIMESTAMP: days
        | st.integers(0, 10**8).map(lambda s: BASE + timedelta(seconds=s - 5 * 10**7)),
        FieldType.EMAIL: st.sampled_from(["=x", "ann", "zoë"]).map(lambda local: f"{local}@x.io"),
        FieldType.PHONE: st.integers(10**8, 10**9).map(lambda n: f"+41{n}"),
    }[ftype]


@st.composite
def rows_of(
    draw: st.DrawFn, fields: tuple[TableField, ...], fixed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each fixed part (keys) completed with optional values; a missing value is an absent key."""
    rows = []
    for keys in fixed:
        row = dict(keys)
        for f in fields:
            if f.name not in row and draw(st.booleans() if not f.required else st.just(True)):
                row[f.name] = draw(values_of(f.type))
        row[CHANGED_AT] = BASE + timedelta(seconds=draw(st.integers(0, 10**6)))
        rows.append(row)
    return rows


@st.composite
def list_records(draw: st.DrawFn, riids: list[int]) -> list[dict[str, Any]]:
    keys = []
    for riid in riids:
        local = draw(st.sampled_from(["ann", "=b", "+c", "-d", "@e", "Zoë"]))
        record: dict[str, Any] = {"RIID_": riid, "EMAIL_ADDRESS_": f"{local.lower()}{riid}@x.io"}
        if draw(st.booleans()):
            record["CUSTOMER_ID_"] = draw(texts()) + str(riid)
        if draw(st.booleans()):
            record["MOBILE_NUMBER_"] = f"+41{riid:09d}"
        if draw(st.booleans()):
            record["EMAIL_PERMISSION_STATUS_"] = draw(st.sampled_from("IO"))
        keys.append(record)
    return draw(rows_of(LIST_FIELDS, keys))


@st.composite
def csv_options(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    fmt = {"delimiter": draw(st.sampled_from(",;|\t")), "quote": draw(st.sampled_from("\"'")),
           "header": draw(st.booleans()), "encoding": draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16"]))}  # fmt: skip
    return fmt, {"gzip": draw(st.booleans()), "ready_file": draw(st.booleans())}


@st.composite
def list_tables(draw: st.DrawFn) -> dict[str, ModelTable]:
    n = next(_names)
    riids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=10))
    people = ModelTable(f"l{n}", "list", LIST_FIELDS, tuple(draw(list_records(riids))))
    tables = {people.name: people}
    for suffix, fields in (("a", PREFS_FIELDS), ("b", PETS_FIELDS)):
        members = draw(st.lists(st.sampled_from(riids), unique=True)) if riids else []
        orphans = draw(st.lists(st.integers(20_000, 20_010), unique=True, max_size=1))
        ext_rows = draw(rows_of(fields, [{"RIID_": r} for r in members + orphans]))
        ext = ModelTable(
            f"l{n}{suffix}", "profile_extension", fields, tuple(ext_rows), parent_list=people.name
        )
        tables[ext.name] = ext
    return tables


@st.composite
def condition(draw: st.DrawFn, tables: dict[str, ModelTable], list_name: str) -> dict[str, Any]:
    ext = [t for t in tables.values() if t.kind == "profile_extension"]
    choices = [(list_name, f) for f in tables[list_name].all_fields]
    choices += [(t.name, f) for t in ext for f in t.fields]
    table_name, fld = draw(st.sampled_from(choices))
    name = fld.name if table_name == list_name else f"{table_name}.{fld.name}"
    ftype = fld.type
    present = [r[fld.name] for r in tables[table_name].rows if fld.name in r]
    value = draw(st.sampled_from(present) | values_of(ftype) if present else values_of(ftype))
    if ftype in (FieldType.STRING, FieldType.EMAIL, FieldType.PHONE):
        op = draw(st.sampled_from(["eq", "ne", "in", "contains", "exists", "gt", "lte"]))
        value = draw(st.sampled_from([value, value.upper(), value.lower(), value[:2]]))
        if op == "in":
            value = [value, draw(texts())]
    elif ftype in (FieldType.INTEGER, FieldType.NUMBER):
        op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "in", "exists"]))
        value = [value, draw(values_of(ftype))] if op == "in" else draw(st.sampled_from([value, str(value)]))
    elif ftype == FieldType.BOOLEAN:
        op = draw(st.sampled_from(["eq", "ne", "exists"]))
        value = draw(st.sampled_from([value, str(value).lower()]))  # JSON true or the word "true"
    else:
        op = draw(st.sampled_from(["gt", "gte", "lt", "lte", "exists"]))
        iso = value.isoformat()
        value = draw(st.sampled_from([value.date().isoformat(), iso, iso.replace("+00:00", "Z")]))
    if op == "exists":
        return {"field": name, "op": op, **draw(st.sampled_from([{}, {"value": True}, {"value": False}]))}
    return {"field": name, "op": op, "value": value}


@st.composite
def list_cases(draw: st.DrawFn, *, incremental: bool = False) -> Case:
    tables = draw(list_tables())
    people = next(t for t in tables.values() if t.kind == "list")
    ext = [t for t in tables.values() if t.kind == "profile_extension"]
    joined = [t for t in ext if draw(st.booleans())]
    extension_fields = [
        {"table": t.name, "fields": draw(_subset([f.name for f in t.fields]))} for t in joined
    ]
    columns = [f.name for f in people.all_fields] + [f for e in extension_fields for f in e["fields"]]
    fields = draw(st.just([]) | _subset(columns))
    source: dict[str, Any] = {"kind": "list", "table": people.name, "extension_fields": extension_fields,
                              "incremental": incremental}  # fmt: skip
    if draw(st.sampled_from([True, True, False])):
        conditions = draw(st.lists(condition(tables, people.name), min_size=1, max_size=3))
        source["filter"] = {"match": draw(st.sampled_from(["all", "any"])), "conditions": conditions}
    fmt, sftp = draw(csv_options())
    return Case(tables, {"kind": "export", "source": source, "format": fmt, "fields": fields}, sftp)


@st.composite
def table_cases(draw: st.DrawFn, *, incremental: bool = False) -> Case:
    if draw(st.sampled_from(["profile_extension", "custom"])) == "profile_extension":
        tables = draw(list_tables())
        source = next(t for t in tables.values() if t.kind == "profile_extension")
    else:
        keys = draw(
            st.lists(st.tuples(texts(), st.sampled_from(["EU", "US", "Å"])), unique=True, max_size=10)
        )
        two = draw(st.booleans())
        keys = list({(k if two else (k[0], "EU")): None for k in keys})
        rows = draw(rows_of(PRODUCT_FIELDS, [{"SKU": s, "REGION": r} for s, r in keys]))
        pk = ("SKU", "REGION") if two else ("SKU",)
        source = ModelTable(f"c{next(_names)}", "custom", PRODUCT_FIELDS, tuple(rows), primary_key=pk)
        tables = {source.name: source}
    fields = draw(st.just([]) | _subset([f.name for f in source.all_fields]))
    fmt, sftp = draw(csv_options())
    spec = {"kind": "export", "source": {"kind": "table", "table": source.name, "incremental": incremental},
            "format": fmt, "fields": fields}  # fmt: skip
    return Case(tables, spec, sftp)


@st.composite
def rest_cases(draw: st.DrawFn) -> Case:
    case = draw(list_cases())
    match_column = draw(st.sampled_from(["EMAIL_ADDRESS_", "RIID_"]))
    fields = case.spec["fields"]
    if fields and match_column not in fields:
        fields.insert(draw(st.integers(0, len(fields))), match_column)
    size = draw(st.sampled_from([1, 2, 3, 5, 200]))
    destination = {"kind": "rest", "connection_id": 2, "list_name": draw(st.sampled_from(["MASTER", "list_ö"])),
                   "match_column": match_column, "batch_size": size}  # fmt: skip
    return Case(case.tables, {**case.spec, "destination": destination})


@st.composite
def incremental_changes(draw: st.DrawFn, case: Case, watermark: datetime, now: datetime) -> Changes:
    """Rows rewritten or added after the first run: stamped after it, exactly at the watermark (`at or after`
    includes it) or before it (a write the first run already read)."""
    tables, updates, inserted = dict(case.tables), [], {}
    for table in case.tables.values():
        rows = list(table.rows)
        for index in draw(st.lists(st.sampled_from(range(len(rows))), unique=True)) if rows else []:
            stamp = draw(st.sampled_from([now, watermark, watermark - timedelta(seconds=5)]))
            editable = [f for f in table.fields if f.name not in table.primary_key]
            changed = {f.name: draw(values_of(f.type)) for f in draw(_subset(editable))} if editable else {}
            key = {k: rows[index][k] for k in table.order_key}
            rows[index] = {**rows[index], **changed, CHANGED_AT: stamp}
            updates.append((table.name, key, {**changed, CHANGED_AT: stamp}))
        tables[table.name] = replace(table, rows=tuple(rows))
    people = next((t for t in tables.values() if t.kind == "list"), None)
    if people is not None and draw(st.booleans()):
        new = [dict(r, **{CHANGED_AT: now}) for r in draw(list_records([30_000 + next(_names)]))]
        inserted[people.name] = replace(people, rows=tuple(new))
        tables[people.name] = replace(people, rows=people.rows + tuple(new))
    return Changes(inserted, updates, replace(case, tables=tables))


def _subset(items: list[Any]) -> st.SearchStrategy[list[Any]]:
    return st.permutations(items).flatmap(lambda p: st.integers(1, len(p)).map(lambda n: list(p[:n])))
