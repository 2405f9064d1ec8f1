"""The one translation of driver errors (shared/mongo.py): what a later try can pass is retryable, a refusal
the server would repeat is permanent, and an error the caller answers itself passes through."""

from __future__ import annotations

import pytest
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from shared.errors import PermanentError, RetryableError
from shared.mongo import database_error, database_errors


def labelled(code: int, label: str) -> OperationFailure:
    return OperationFailure("refused", code, {"errorLabels": [label], "code": code, "errmsg": "refused"})


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection closed"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no server"),
        OperationFailure("WriteConflict", 112),
        OperationFailure("not primary", 10107),
        OperationFailure("operation exceeded time limit", 50),
        labelled(8000, "TransientTransactionError"),
        labelled(8000, "RetryableWriteError"),
    ],
    ids=lambda e: type(e).__name__ + (f"-{e.code}" if isinstance(e, OperationFailure) else ""),
)
def test_what_a_later_try_can_pass_is_retryable(error: PyMongoError) -> None:
    translated = database_error("writing runs", error)
    assert isinstance(translated, RetryableError)
    assert translated.message.startswith("database error while writing runs: ")


@pytest.mark.parametrize(
    "error",
    [
        OperationFailure("document too large", 10334),
        OperationFailure("invalid update", 9),
        DuplicateKeyError("dup", 11000),
    ],
    ids=["too-large", "invalid-update", "duplicate-key"],
)
def test_a_refusal_the_server_would_repeat_is_permanent(error: PyMongoError) -> None:
    translated = database_error("writing runs", error)
    assert isinstance(translated, PermanentError)
    assert translated.message.startswith("database refused writing runs: ")


def test_the_block_translates_what_it_does_not_let_pass() -> None:
    with pytest.raises(RetryableError) as caught, database_errors("claiming run 7.1"):
        raise AutoReconnect("gone")
    assert isinstance(caught.value.__cause__, AutoReconnect)
    with pytest.raises(DuplicateKeyError), database_errors("claiming run 7.1", passing=(DuplicateKeyError,)):
        raise DuplicateKeyError("taken", 11000)
    with pytest.raises(ValueError), database_errors("claiming run 7.1"):
        raise ValueError("not the database's")  # only driver errors are translated
