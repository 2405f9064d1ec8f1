"""Catalog rules (roles, tokens, tables, import jobs) and the shared helpers they rely on."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from services.catalog.domain import (
    Role,
    StoredToken,
    TokenCache,
    hash_token,
    require_role,
    validate_import,
    validate_table,
)
from services.catalog.service import CatalogService
from shared.catalog_records import ConnectionRecord, TableRecord
from shared.contracts.jobs import FieldType, TableField
from shared.errors import Forbidden, Unauthorized, ValidationFailed
from shared.paths import resolve_inside
from shared.runlogs import missing_sequences
from tests.support.catalog_fakes import FakeCatalog, FakeTokens
from tests.unit.factories import T0, import_spec

# --- roles and tokens ------------------------------------------------------------------------------


def test_roles_are_ordered_viewer_operator_admin() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert sorted([Role.ADMIN, Role.VIEWER, Role.OPERATOR]) == [Role.VIEWER, Role.OPERATOR, Role.ADMIN]


@pytest.mark.parametrize(
    ("actual", "needed"),
    [
        (Role.VIEWER, Role.VIEWER),
        (Role.OPERATOR, Role.VIEWER),
        (Role.OPERATOR, Role.OPERATOR),
        (Role.ADMIN, Role.VIEWER),
        (Role.ADMIN, Role.OPERATOR),
        (Role.ADMIN, Role.ADMIN),
    ],
)
def test_a_role_may_do_what_the_roles_below_it_may(actual: Role, needed: Role) -> None:
    require_role(actual, needed)  # does not raise


@pytest.mark.parametrize(
    ("actual", "needed"),
    [(Role.VIEWER, Role.OPERATOR), (Role.VIEWER, Role.ADMIN), (Role.OPERATOR, Role.ADMIN)],
)
def test_a_lower_role_is_forbidden(actual: Role, needed: Role) -> None:
    with pytest.raises(Forbidden) as error:
        require_role(actual, needed)

    assert needed.name.lower() in error.value.message


@pytest.mark.parametrize(
    ("name", "role"), [("viewer", Role.VIEWER), ("Operator", Role.OPERATOR), ("ADMIN", Role.ADMIN)]
)
def test_role_parse_is_case_insensitive(name: str, role: Role) -> None:
    assert Role.parse(name) is role


@pytest.mark.parametrize("name", ["root", "", "admins"])
def test_role_parse_refuses_unknown_roles(name: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        Role.parse(name)

    assert error.value.field == "role"


def test_hash_token_is_deterministic_and_hides_the_token() -> None:
    token = "tok_9f8e7d6c5b4a"

    hashed = hash_token(token)

    assert hashed == hash_token(token)
    assert hashed != token
    assert token not in hashed
    assert hash_token(token + "x") != hashed
    assert len(hashed) == 64
    int(hashed, 16)  # hexadecimal


# --- tables ----------------------------------------------------------------------------------------


def test_valid_table_passes() -> None:
    validate_table("people", ("email",), ["email", "name"])
    validate_table("people", ("email", "site"), ["email", "site", "name"])


def test_duplicate_field_names_are_refused() -> None:
    with pytest.raises(ValidationFailed) as error:
        validate_table("people", ("email",), ["email", "name", "name", "age", "age"])

    assert error.value.field == "fields"
    assert "age, name" in error.value.message


def test_primary_key_must_be_a_field() -> None:
    with pytest.raises(ValidationFailed) as error:
        validate_table("people", ("email", "id"), ["email", "name"])

    assert error.value.field == "primary_key"
    assert "id" in error.value.message


# --- import jobs -----------------------------------------------------------------------------------


def table(primary_key: tuple[str, ...] = ("email",)) -> TableRecord:
    return TableRecord(
        name="people",
        primary_key=primary_key,
        fields=(
            TableField(name="email", type=FieldType.EMAIL, required=True),
            TableField(name="name"),
            TableField(name="age", type=FieldType.INTEGER),
        ),
        created_at=T0,
        created_by="admin",
    )


def connection(base_dir: str = "/data/acme") -> ConnectionRecord:
    return ConnectionRecord.model_validate(
        {
            "_id": 1,
            "name": "acme-sftp",
            "host": "sftp.example.com",
            "port": 22,
            "username": "acme",
            "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
            "base_dir": base_dir,
            "created_at": T0,
            "created_by": "admin",
        }
    )


@pytest.mark.parametrize("path", ["people.csv", "in/people.csv", "/in/people.csv", "in/..people.csv"])
def test_valid_import_passes(path: str) -> None:
    validate_import(import_spec(path), table(), connection())


@pytest.mark.parametrize("path", ["../people.csv", "in/../../other/people.csv", "../acme2/people.csv"])
def test_import_path_must_stay_inside_the_base_directory(path: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        validate_import(import_spec(path), table(), connection())

    assert error.value.field == "spec.source.path"


def test_mapping_to_an_unknown_field_names_the_mapping_entry() -> None:
    spec = import_spec(mapping=(("Email", "email"), ("Name", "name"), ("Score", "score")))

    with pytest.raises(ValidationFailed) as error:
        validate_import(spec, table(), connection())

    assert error.value.field == "spec.mapping[2].field"
    assert "score" in error.value.message


def test_a_field_mapped_twice_is_refused() -> None:
    spec = import_spec(mapping=(("Email", "email"), ("Name", "name"), ("Alias", "name")))

    with pytest.raises(ValidationFailed) as error:
        validate_import(spec, table(), connection())

    assert error.value.field == "spec.mapping"
    assert "more than once" in error.value.message


def test_a_column_mapped_twice_is_refused() -> None:
    spec = import_spec(mapping=(("Email", "email"), ("Email", "name")))

    with pytest.raises(ValidationFailed) as error:
        validate_import(spec, table(), connection())

    assert error.value.field == "spec.mapping"


def test_the_mapping_must_fill_the_primary_key() -> None:
    spec = import_spec(mapping=(("Email", "email"), ("Name", "name")))

    with pytest.raises(ValidationFailed) as error:
        validate_import(spec, table(primary_key=("email", "age")), connection())

    assert error.value.field == "spec.mapping"
    assert "age" in error.value.message


# --- shared.paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("/data", "a/b.csv", "/data/a/b.csv"),
        ("/data/", "/a.csv", "/data/a.csv"),
        ("data", "./x/a.csv", "/data/x/a.csv"),
        ("/data", ".", "/data"),
        ("/", "a.csv", "/a.csv"),
    ],
)
def test_resolve_inside_joins_and_normalises(base: str, path: str, expected: str) -> None:
    assert resolve_inside(base, path) == expected


@pytest.mark.parametrize(
    "path", ["..", "../secret", "a/../../secret", "../data2/file", "/../etc/passwd", "x/../a.csv", "..\\a"]
)
def test_resolve_inside_refuses_escapes(path: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        resolve_inside("/data", path)

    assert error.value.field == "path"


def test_resolve_inside_refuses_nul_characters() -> None:
    with pytest.raises(ValidationFailed) as error:
        resolve_inside("/data", "a.csv\x00.txt")

    assert error.value.field == "path"


# --- shared.runlogs --------------------------------------------------------------------------------


def test_no_gaps() -> None:
    assert missing_sequences([1, 2, 3]) == []
    assert missing_sequences([3, 1, 2, 2]) == []
    assert missing_sequences([]) == []
    assert missing_sequences([1, 2, 3], last_seq=3) == []


def test_gaps_in_the_middle_are_inclusive_ranges() -> None:
    assert missing_sequences([1, 2, 5, 6, 8]) == [(3, 4), (7, 7)]


def test_missing_first_lines() -> None:
    assert missing_sequences([3, 4]) == [(1, 2)]


def test_missing_tail_is_found_with_the_last_announced_number() -> None:
    assert missing_sequences([1, 2], last_seq=5) == [(3, 5)]
    assert missing_sequences([], last_seq=2) == [(1, 2)]
    assert missing_sequences([1, 3], last_seq=4) == [(2, 2), (4, 4)]


def test_start_offset_for_later_pages() -> None:
    assert missing_sequences([11, 12, 14], start=11) == [(13, 13)]
    assert missing_sequences([13], start=11, last_seq=15) == [(11, 12), (14, 15)]
    assert missing_sequences([], start=11, last_seq=10) == []


def test_the_token_cache_keeps_a_valid_token_for_its_ttl_only() -> None:
    cache: TokenCache[str] = TokenCache(5.0)
    assert cache.get("h", now=100.0) is None
    cache.put("h", "alice", now=100.0)
    assert cache.get("h", now=104.9) == "alice"
    assert cache.get("h", now=105.0) is None  # expired: the next request looks the token up again
    assert cache.get("h", now=105.1) is None


def test_a_token_cache_of_zero_seconds_keeps_nothing_and_a_full_one_stays_bounded() -> None:
    off: TokenCache[str] = TokenCache(0.0)
    off.put("h", "alice", now=1.0)
    assert off.get("h", now=1.0) is None
    small: TokenCache[int] = TokenCache(10.0, max_entries=3)
    for n in range(5):
        small.put(f"t{n}", n, now=float(n))
    assert len([n for n in range(5) if small.get(f"t{n}", now=5.0) is not None]) <= 3
    assert small.get("t4", now=5.0) == 4  # the newest is always kept


async def test_a_burst_of_requests_with_one_token_shares_one_lookup() -> None:
    class Tokens(FakeTokens):
        """What `authenticate` reads: tokens answering slowly, counting their lookups."""

        def __init__(self) -> None:
            super().__init__()
            self.lookups = 0

        async def get(self, token_hash: str) -> StoredToken | None:
            self.lookups += 1
            await asyncio.sleep(0.05)
            return await super().get(token_hash)

    catalog, tokens = FakeCatalog(), Tokens()
    catalog.tokens = tokens
    await tokens.add(StoredToken(hash_token("good"), "ops", Role.OPERATOR, T0))
    service = CatalogService(catalog, cast(Any, None), audience=cast(Any, None),
                             probe=cast(Any, None), token_cache_seconds=5.0)  # fmt: skip
    principals = await asyncio.gather(*(service.authenticate("good") for _ in range(50)))
    assert {p.name for p in principals} == {"ops"} and tokens.lookups == 1
    refused = await asyncio.gather(*(service.authenticate("bad") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, Unauthorized) for r in refused) and tokens.lookups == 2
    await service.authenticate("good")  # cached
    with pytest.raises(Unauthorized):  # an invalid token is never cached: it is looked up again
        await service.authenticate("bad")
    assert tokens.lookups == 3
