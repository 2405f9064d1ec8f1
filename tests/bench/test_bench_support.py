"""The run benchmarks' own parts: argument parsing, the server-side counting they rely on, Celery's task.

The benchmarks themselves take minutes (four services, interleaved rounds); these check in seconds that
what they print is counted right and that the Celery runner does the same unit of work as Connect.
"""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from pathlib import Path

import pytest
from pymongo import MongoClient

from tests.support.servers import Sshd

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

support = importlib.import_module("_support")
run_overhead = importlib.import_module("run_overhead")
run_now = importlib.import_module("run_now")


def test_run_overhead_arguments() -> None:
    default = run_overhead.parse([])
    assert (default.rounds, default.runs, default.slot_counts, default.breakdown) == (2, 100, [2], False)
    quick = run_overhead.parse(["--rounds", "1", "--runs", "2", "--slots", "2", "--breakdown"])
    assert (quick.rounds, quick.runs, quick.slot_counts, quick.breakdown) == (1, 2, [2], True)
    with pytest.raises(SystemExit):
        run_overhead.parse(["--slots", "0"])


def test_run_now_arguments() -> None:
    default = run_now.parse([])
    assert (default.jobs, default.sequential, default.isolated, default.slot_counts) == (100, 100, 50, [2])
    assert run_now.parse(["--slots", "2,8", "--jobs", "3"]).slot_counts == [2, 8]
    with pytest.raises(SystemExit):
        run_now.parse(["--jobs", "0"])


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert support.percentile(values, 50) == 51.0  # rank round(0.5 * 99) = 50, counted from 0
    assert support.percentile(values, 99) == 99.0
    assert support.percentile([0.2], 99) == 0.2


def test_server_probe_counts_operations_by_kind_and_namespace(mongo_url: str, unique: str) -> None:
    probe = support.ServerProbe(mongo_url)
    collection: MongoClient[dict[str, object]] = MongoClient(mongo_url)
    try:
        target = collection[f"probe{unique}"]["things"]
        target.insert_one({"_id": 0})  # the namespace exists before the first sample
        before = probe.sample()
        for n in range(1, 4):
            target.insert_one({"_id": n})
        target.update_one({"_id": 1}, {"$set": {"x": 1}})
        assert target.find_one({"_id": 2}) == {"_id": 2}
        delta = probe.sample().minus(before)
        delta.ops -= probe.sample_cost
        assert delta.ops["insert"] == 3 and delta.ops["update"] == 1 and delta.ops["query"] == 1
        assert delta.within(f"probe{unique}") == {
            f"probe{unique}.things": Counter({"insert": 3, "update": 1, "query": 1})
        }
        assert support.per_run(Counter({"insert": 3, "update": 1}), 2) == "2.0 (insert 1.5, update 0.5)"
    finally:
        collection.drop_database(f"probe{unique}")
        collection.close()
        probe.close()


def test_celery_task_does_the_same_unit_of_work(
    mongo_url: str, sshd: Sshd, tmp_path: Path, unique: str
) -> None:
    support.write_row_files(sshd.root, 2)
    key = tmp_path / "key"
    key.write_text(sshd.private_key)
    key.chmod(0o600)
    config = run_overhead.CeleryConfig(
        amqp_url="amqp://unused", mongo_url=mongo_url, database=f"celery{unique}", queue="unused",
        sshd_port=sshd.port, sshd_user=sshd.username, sshd_key=str(key), sshd_host_key=sshd.host_key,
        sshd_root=str(sshd.root),
    )  # fmt: skip
    client: MongoClient[dict[str, object]] = MongoClient(mongo_url)
    try:
        assert run_overhead.import_row(config, 2, "2.1") == {"read": 1, "written": 1}
        db = client[config.database]
        assert db["table_rows"].find_one({}, {"_id": 0}) == {
            "customer_id": "C000002", "email": "user2@example.com", "points": 20
        }  # fmt: skip
        record = db["runs"].find_one({"_id": "2.1"})
        assert record is not None and record["status"] == "succeeded" and record["job"] == 2
    finally:
        client.drop_database(config.database)
        client.close()
