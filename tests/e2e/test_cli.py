"""The `connect` command against the four running services: every command's happy path and error path."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.mongo import MongoClient
from shared.notification_records import NotificationStatus
from tests.e2e.conftest import RunningSystem
from tests.support.api import contacts_table, import_job, wait_for_run
from tests.support.notifications import notification, store_notifications
from tests.support.servers import Sshd

pytestmark = pytest.mark.e2e

CONNECT = str(Path(sys.executable).parent / "connect")


class Cli:
    """Runs `connect …` as a user would, with its own config directory."""

    def __init__(self, system: RunningSystem, home: Path) -> None:
        self.system = system
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(home / "config"),
            "HOME": str(home),
            "COLUMNS": "250",
            "CONNECT_API_URL": system.api_url,
            "CONNECT_TOKEN": system.token,
            "AMQP_URL": system.settings.amqp_url,
            "CONNECT_AMQP_PREFIX": system.settings.amqp_prefix,
        }

    def __call__(self, *args: str, ok: bool = True, env: dict[str, str] | None = None,
                 stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
        result = subprocess.run([CONNECT, *args], env={**self.env, **(env or {})}, capture_output=True,
                                text=True, timeout=timeout, input=stdin)  # fmt: skip
        if ok:
            assert result.returncode == 0, (
                f"connect {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--output", "json").stdout)


@pytest.fixture
def cli(system: RunningSystem, tmp_path: Path) -> Cli:
    return Cli(system, tmp_path)


@pytest.fixture
async def table(api: httpx.AsyncClient, unique: str) -> str:
    name = f"cli_{unique}"
    assert (await api.post("/tables", json=contacts_table(name))).status_code == 201
    return name


def write_contacts(sshd: Sshd, relative: str, count: int, *, bad_every: int = 0) -> None:
    path = sshd.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "email", "points"])
        for i in range(1, count + 1):
            bad = bad_every and i % bad_every == 0
            writer.writerow([f"C{i:06d}", "bad" if bad else f"u{i}@example.com", str(i)])


def job_file(tmp_path: Path, body: dict[str, Any]) -> str:
    path = tmp_path / "job.yaml"
    import yaml

    path.write_text(yaml.safe_dump(body))
    return str(path)


async def test_login_stores_url_and_token_privately_and_env_overrides_it(cli: Cli, system: RunningSystem,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    bare = {"CONNECT_API_URL": "", "CONNECT_TOKEN": ""}
    refused = cli("jobs", "list", ok=False, env=bare)
    assert refused.returncode == 1 and "connect login" in refused.stderr

    wrong = cli("login", "--url", system.api_url, "--token", "cnt_wrong", ok=False, env=bare)
    assert wrong.returncode == 1 and "invalid or revoked token" in wrong.stderr
    base = system.api_url.removesuffix("/api/v1")
    cli("login", "--url", base, env=bare, stdin=f"{system.token}\n")  # the token is prompted for, hidden
    stored = tmp_path / "config" / "connect" / "config.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text()) == {"api_url": system.api_url, "token": system.token}
    assert cli("jobs", "list", env=bare).returncode == 0

    overridden = cli("jobs", "list", ok=False, env={"CONNECT_TOKEN": "cnt_env_wins", "CONNECT_API_URL": ""})
    assert overridden.returncode == 1 and "invalid or revoked token" in overridden.stderr
    assert "logged out" in cli("logout", env=bare).stdout
    assert not stored.exists()


async def test_jobs_commands(cli: Cli, sftp_connection: int, table: str, unique: str, tmp_path: Path) -> None:
    body = import_job(f"cli job {unique}", sftp_connection, "in.csv", table)
    created = cli.json("jobs", "create", "-f", job_file(tmp_path, body))
    job_id = created["id"]
    assert created["created_by"] == "e2e-admin" and created["state"] == "active"
    duplicate = cli("jobs", "create", "-f", job_file(tmp_path, body), ok=False)
    assert duplicate.returncode == 1 and "already" in duplicate.stderr and "conflict" in duplicate.stderr
    invalid = cli(
        "jobs",
        "create",
        "-f",
        job_file(tmp_path, {**body, "name": "x", "spec": {"kind": "import"}}),
        ok=False,
    )
    assert invalid.returncode == 1 and "spec.source" in invalid.stderr
    said = invalid.stderr.splitlines()  # every missing field on a line of its own
    assert said[0].startswith("error: spec.source: ") and any(
        line.startswith("spec.target: ") for line in said
    )

    listed = cli("jobs", "list", "--name", unique)
    for column in ("Job ID", "Group", "Name", "Job Type", "Created on", "By", "Job state", "Next run",
                   "Previous run", "Schedule type", "Expiration date"):  # fmt: skip
        assert column in listed.stdout
    assert f"cli job {unique}" in listed.stdout and "On-demand" in listed.stdout
    assert [j["id"] for j in cli.json("jobs", "list", "--name", unique)["items"]] == [job_id]
    shown = cli("jobs", "show", str(job_id)).stdout
    assert "in.csv" in shown
    assert re.search(r"created_at +\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", shown), shown  # says its zone
    missing = cli("jobs", "show", "999999", ok=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "404" in missing.stderr

    edited = cli.json("jobs", "edit", str(job_id), "--name", f"renamed {unique}")
    assert edited["name"] == f"renamed {unique}" and edited["version"] == created["version"] + 1
    patch = tmp_path / "patch.json"
    patch.write_text(
        json.dumps({"schedule": {"type": "recurring", "rule": {"kind": "daily", "at": "03:00"}}})
    )
    assert cli.json("jobs", "edit", str(job_id), "-f", str(patch))["schedule_type"] == "recurring"
    editor = cli("jobs", "edit", str(job_id), env={"EDITOR": "sed -i s/renamed/edited/"})
    assert "saved job" in editor.stdout
    assert cli.json("jobs", "show", str(job_id))["name"] == f"edited {unique}"
    bad_edit = cli("jobs", "edit", str(job_id), "--name", "", ok=False)
    assert bad_edit.returncode == 1 and "name" in bad_edit.stderr
    assert cli.json("jobs", "preview", str(job_id), "--count", "3")["fires"].__len__() == 3
    later = cli.json("jobs", "preview", str(job_id), "--count", "1", "--from", "2031-06-01T12:00:00Z")
    assert later["fires"][0]["utc"].startswith("2031-06-02T03:00")  # daily 03:00 UTC, after --from
    patch.write_text(json.dumps({"schedule": {"type": "recurring", "rule": {"kind": "daily", "at": "03:00"},
                                              "spread_minutes": 30}}))  # fmt: skip
    cli.json("jobs", "edit", str(job_id), "-f", str(patch))
    spread = cli("jobs", "preview", str(job_id), "--count", "2", "--from", "2031-06-01T12:00:00Z").stdout
    assert "Slot (UTC)" in spread and "2031-06-02T03:00:00Z" in spread and "after each slot" in spread

    refused = cli("jobs", "copy", str(job_id), "--name", f"copy {unique}", ok=False)
    assert refused.returncode == 1 and "inactive" in refused.stderr
    assert cli.json("jobs", "deactivate", str(job_id))["state"] == "inactive"
    copy = cli.json("jobs", "copy", str(job_id), "--name", f"copy {unique}")
    assert copy["state"] == "inactive" and copy["name"] == f"copy {unique}"
    assert cli.json("jobs", "activate", str(job_id))["state"] == "active"
    assert cli("jobs", "activate", "999999", ok=False).returncode == 1

    not_running = cli("jobs", "stop", str(job_id), "--yes", ok=False)
    assert not_running.returncode == 1 and "error:" in not_running.stderr
    declined = cli("jobs", "delete", str(copy["id"]), ok=False, stdin="n\n")
    assert declined.returncode == 1
    assert cli.json("jobs", "delete", str(job_id), str(copy["id"]), "--yes")["deleted"] == [
        job_id,
        copy["id"],
    ]
    gone = cli("jobs", "delete", str(job_id), "--yes", ok=False)
    assert gone.returncode == 1 and "not exist" in gone.stderr


async def test_run_watch_logs_and_runs_list(
    cli: Cli, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str,
    mongo: MongoClient,
) -> None:  # fmt: skip
    write_contacts(sshd, f"{unique}/in.csv", 3000, bad_every=500)
    job = (
        await api.post(
            "/jobs", json=import_job(f"watched {unique}", sftp_connection, f"{unique}/in.csv", table)
        )
    ).json()
    run_id = cli("jobs", "run", str(job["id"])).stdout.strip()
    assert run_id == f"{job['id']}.1"
    watched = cli("runs", "watch", run_id, "--interval", "0.3")
    assert watched.returncode == 0 and "partial" in watched.stdout and "rejected 6" in watched.stdout
    assert "records" in watched.stdout

    assert "has no notifications" in cli("runs", "show", run_id).stdout
    # As the logsink stores them (the job has no rules, so it sends none of its own for this run).
    failed = notification(run_id, channel_id=4, kind="smtp", status=NotificationStatus.FAILED, attempts=2,
                          channel_name="ops mail", last_error="SMTP 550: mailbox unavailable")  # fmt: skip
    await store_notifications(mongo, cli.system.settings.database("logsink"), [failed])
    text = cli("runs", "show", run_id).stdout
    assert "Notifications" in text and "ops mail (smtp)" in text and "SMTP 550: mailbox unavailable" in text
    assert "Failed after 2 attempts, given up" in text
    shown = cli.json("runs", "show", run_id)
    assert shown["status"] == "partial" and shown["counts"]["rejected"] == 6
    assert [(n["channel_name"], n["status"], n["attempts"]) for n in shown["notifications"]] == [
        ("ops mail", "failed", 2)
    ]
    listed = cli("runs", "list", "--job-id", str(job["id"]))
    for column in (
        "Job ID.Run ID",
        "Group ID.Run ID",
        "Group",
        "Name",
        "Job type",
        "Start time",
        "Duration",
        "Run status",
    ):
        assert column in listed.stdout
    assert "Success, 6 rejects" in listed.stdout
    assert [
        r["run_id"]
        for r in cli.json("runs", "list", "--job-id", str(job["id"]), "--status", "partial")["items"]
    ] == [run_id]
    bad_filter = cli("runs", "list", "--status", "nonsense", ok=False)
    assert bad_filter.returncode == 1 and "status" in bad_filter.stderr

    log = cli("runs", "logs", run_id).stdout
    assert "file found" in log and "finished" in log
    lines = cli.json("runs", "logs", run_id)["lines"]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    followed = cli("runs", "logs", run_id, "--follow", timeout=30).stdout  # a finished run: prints and ends
    assert "finished" in followed
    assert cli("runs", "logs", "424242.1", ok=False).returncode == 1
    assert cli("runs", "show", "not-a-run", ok=False).returncode == 1

    second = cli.json("jobs", "run", str(job["id"]))["run_id"]
    followed = cli("runs", "logs", second, "--follow", timeout=60).stdout  # follows the live tail to its end
    assert "finished" in followed


async def test_jobs_dry_run_prints_what_a_run_would_do_and_writes_nothing(
    cli: Cli, api: httpx.AsyncClient, system: RunningSystem, mongo: MongoClient, sshd: Sshd, sftp_connection: int,
    table: str, unique: str,
) -> None:  # fmt: skip
    write_contacts(sshd, f"{unique}/seed.csv", 2)
    seed = import_job(f"seed {unique}", sftp_connection, f"{unique}/seed.csv", table)
    seeded = (await api.post("/jobs", json=seed)).json()
    assert cli("jobs", "run", str(seeded["id"]), "--watch").returncode == 0
    write_contacts(sshd, f"{unique}/next.csv", 6, bad_every=3)  # C1, C2 exist; C3 and C6 are bad
    source = sshd.root / unique / "next.csv"
    written = source.read_bytes()
    rows = mongo[system.settings.audience_database][f"table_{table}"]
    before = await rows.find({}).sort("_id", 1).to_list(None)
    job = (await api.post("/jobs", json=import_job(f"dry {unique}", sftp_connection, f"{unique}/next.csv", table)
                          | {"active": False})).json()  # fmt: skip

    shown = cli("jobs", "dry-run", str(job["id"]), "--watch")  # an inactive job may be tried

    assert f"dry run {job['id']}.1: partial (read 6, would insert 2, would update 0, unchanged 2, " \
           "would reject 2); nothing was written" in shown.stdout  # fmt: skip
    assert "line 4 (file 1): email: 'bad' is not an email address" in shown.stdout
    assert "line 7 (file 1): email:" in shown.stdout
    assert await rows.find({}).sort("_id", 1).to_list(None) == before
    assert source.read_bytes() == written  # not moved, no rejects file beside it
    assert sorted(p.name for p in source.parent.iterdir()) == ["next.csv", "seed.csv"]
    record = cli.json("runs", "show", f"{job['id']}.1")
    assert record["trigger"] == "dry_run" and record["dry_run"] is True
    assert [(r["line"], r["field"]) for r in record["first_rejects"]] == [(4, "email"), (7, "email")]
    assert "would reject line 4" in cli("runs", "logs", f"{job['id']}.1").stdout
    assert cli("jobs", "dry-run", "424242", ok=False).returncode == 1


async def test_runs_watch_exit_codes(
    cli: Cli, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    good = (
        await api.post("/jobs", json=import_job(f"good {unique}", sftp_connection, f"{unique}/ok.csv", table))
    ).json()
    write_contacts(sshd, f"{unique}/ok.csv", 5)
    assert cli("jobs", "run", str(good["id"]), "--watch").returncode == 0

    failing = (
        await api.post(
            "/jobs", json=import_job(f"failing {unique}", sftp_connection, f"{unique}/absent.csv", table)
        )
    ).json()
    run_id = (await api.post(f"/jobs/{failing['id']}/run")).json()["run_id"]
    result = cli("runs", "watch", run_id, ok=False)
    assert result.returncode == 3 and "failed" in result.stdout

    write_contacts(sshd, f"{unique}/big.csv", 100_000)
    long = (
        await api.post(
            "/jobs", json=import_job(f"long {unique}", sftp_connection, f"{unique}/big.csv", table)
        )
    ).json()
    long_run = (await api.post(f"/jobs/{long['id']}/run")).json()["run_id"]
    timed_out = cli("runs", "watch", long_run, "--timeout", "1", ok=False)
    assert timed_out.returncode == 5 and "did not end" in timed_out.stderr
    cli("jobs", "stop", str(long["id"]), "--yes")
    stopped = cli("runs", "watch", long_run, "--output", "json", ok=False, timeout=90)
    assert stopped.returncode == 4 and json.loads(stopped.stdout)["status"] == "stopped"
    assert (await wait_for_run(api, long_run))["status"] == "stopped"

    unknown = cli("runs", "watch", "999999.1", "--timeout", "2", ok=False)  # unknown at the deadline
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr


async def test_groups_commands(
    cli: Cli, api: httpx.AsyncClient, sftp_connection: int, table: str, unique: str
) -> None:
    a = (await api.post("/jobs", json=import_job(f"ga {unique}", sftp_connection, "a.csv", table))).json()
    b = (await api.post("/jobs", json=import_job(f"gb {unique}", sftp_connection, "b.csv", table))).json()
    group = cli.json("groups", "create", "--name", f"grp {unique}", "--jobs", f"{a['id']},{b['id']}")
    assert [m["id"] for m in group["jobs"]] == [a["id"], b["id"]] and group["created_by"] == "e2e-admin"
    taken = cli("groups", "create", "--name", f"grp2 {unique}", "--jobs", str(a["id"]), ok=False)
    assert taken.returncode == 1 and "error:" in taken.stderr  # a job belongs to at most one group
    listed = cli("groups", "list")
    for column in (
        "Group ID",
        "Created on",
        "By",
        "Name",
        "Next run",
        "Previous run",
        "Schedule type",
        "Expiration date",
    ):
        assert column in listed.stdout
    assert f"ga {unique} → gb {unique}" in listed.stdout
    reordered = cli.json("groups", "edit", str(group["id"]), "--jobs", f"{b['id']},{a['id']}")
    assert [m["id"] for m in reordered["jobs"]] == [b["id"], a["id"]]
    assert cli.json("groups", "show", str(group["id"]))["name"] == f"grp {unique}"
    assert cli.json("groups", "deactivate", str(group["id"]))["state"] == "inactive"
    assert cli.json("groups", "activate", str(group["id"]))["state"] == "active"
    assert cli("groups", "show", "999999", ok=False).returncode == 1
    assert cli("groups", "edit", str(group["id"]), "--jobs", "x,y", ok=False).returncode == 2  # usage error
    assert cli("groups", "stop", str(group["id"]), "--yes", ok=False).returncode == 1  # nothing is running
    cli.json("groups", "runs", "--group-id", str(group["id"]))
    assert cli("groups", "run-show", "999999.1", ok=False).returncode == 1
    assert "deleted" in cli("groups", "delete", str(group["id"]), "--yes").stdout
    assert cli("groups", "delete", str(group["id"]), "--yes", ok=False).returncode == 1


async def test_trigger_publishes_a_trigger_event(cli: Cli, system: RunningSystem, unique: str) -> None:
    import aio_pika

    from shared.contracts import TriggerFired

    name = f"files.{unique}"
    connection = await aio_pika.connect(system.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{system.settings.amqp_prefix}connect.triggers")
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=name)
        published = cli.json("trigger", name, "--key", "k1", "--param", "date=2026-01-01", "--param", "x=y=z")
        assert published["idempotency_key"] == "k1" and published["params"] == {
            "date": "2026-01-01",
            "x": "y=z",
        }
        message = await queue.get(timeout=10, fail=True)
        assert message is not None
        await message.ack()
    event = TriggerFired.model_validate_json(message.body)
    assert event.data.name == name and event.data.idempotency_key == "k1"
    assert event.data.params == {"date": "2026-01-01", "x": "y=z"}
    assert (
        message.content_type == "application/cloudevents+json"
        and message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    )
    assert message.message_id == published["message_id"] == event.id

    bad_name = cli("trigger", "bad name!", ok=False)
    assert bad_name.returncode == 2 and "name" in bad_name.stderr
    bad_param = cli("trigger", "x", "--param", "novalue", ok=False)
    assert bad_param.returncode == 2 and "key=value" in bad_param.stderr
    no_broker = cli("trigger", "x", ok=False, env={"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"})
    assert no_broker.returncode == 1 and "cannot reach RabbitMQ" in no_broker.stderr


async def test_trigger_starts_an_on_event_job(cli: Cli, api: httpx.AsyncClient, sshd: Sshd,
                                              sftp_connection: int, table: str, unique: str) -> None:  # fmt: skip
    write_contacts(sshd, f"{unique}/t.csv", 3)
    schedule = {"type": "on_event", "trigger": f"files.{unique}"}
    body = import_job(f"on event {unique}", sftp_connection, f"{unique}/t.csv", table) | {
        "schedule": schedule
    }
    job = (await api.post("/jobs", json=body)).json()
    cli("trigger", f"files.{unique}", "--key", "k1")
    run = await wait_for_run(api, f"{job['id']}.1", timeout=60)
    assert run["trigger"] == "event" and run["status"] == "succeeded"


async def test_admin_create_token(cli: Cli, system: RunningSystem) -> None:
    env = {"MONGO_URL": system.settings.mongo_url or "", "CONNECT_DB_PREFIX": system.settings.db_prefix}
    token = cli("admin", "create-token", "--name", "cli-viewer", "--role", "viewer", env=env).stdout.strip()
    assert token.startswith("cnt_")
    viewer = {"CONNECT_TOKEN": token}
    assert cli("jobs", "list", env=viewer).returncode == 0
    forbidden = cli("jobs", "create", "-f", "-", ok=False, env=viewer, stdin='{"name": "x", "spec": {}}')
    assert forbidden.returncode == 1
    bad_role = cli("admin", "create-token", "--name", "x", "--role", "king", ok=False, env=env)
    assert bad_role.returncode == 2 and "unknown role" in bad_role.stderr
    no_db = cli("admin", "create-token", "--name", "x", ok=False, env={"MONGO_URL": ""})
    assert no_db.returncode == 2 and "MONGO_URL" in no_db.stderr


async def test_admin_tokens_create_list_revoke(cli: Cli, system: RunningSystem) -> None:
    env = {"MONGO_URL": system.settings.mongo_url or "", "CONNECT_DB_PREFIX": system.settings.db_prefix}
    created = cli(
        "admin",
        "tokens",
        "create",
        "--name",
        "cli-ops",
        "--role",
        "operator",
        "--expires-in-days",
        "2",
        env=env,
    )
    token, token_id = created.stdout.strip(), created.stderr.strip().split()[-1]
    assert cli("jobs", "list", env={"CONNECT_TOKEN": token}).returncode == 0
    row = next(
        line
        for line in cli("admin", "tokens", "list", env=env).stdout.splitlines()
        if line.startswith(token_id)
    )
    assert "cli-ops\toperator" in row and row.endswith("active") and token not in row
    assert cli("admin", "tokens", "revoke", token_id, env=env).returncode == 0
    listed = cli("admin", "tokens", "list", env=env).stdout
    assert f"{token_id}\t" in listed and next(
        r for r in listed.splitlines() if r.startswith(token_id)
    ).endswith("revoked")
    assert cli("admin", "tokens", "revoke", "tok_nothere", ok=False, env=env).returncode == 1


async def test_runs_rejects_lists_every_reject_with_its_record(
    cli: Cli, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/rejects.csv", 2100, bad_every=2)  # 1,050 rejects: two pages of the CLI
    job = (
        await api.post(
            "/jobs", json=import_job(f"rejects {unique}", sftp_connection, f"{unique}/rejects.csv", table)
        )
    ).json()
    run_id = cli("jobs", "run", str(job["id"])).stdout.strip()
    assert cli("runs", "watch", run_id, "--interval", "0.3").returncode == 0

    rows = list(csv.reader(cli("runs", "rejects", run_id, "--output", "csv").stdout.splitlines()))
    assert rows[0] == ["file", "line", "field", "reason", "record"]
    assert rows[1] == ["1", "3", "email", "'bad' is not an email address", "C000002,bad,2"]
    assert [int(row[1]) for row in rows[1:]] == list(range(3, 2102, 2))
    listed = cli.json("runs", "rejects", run_id)
    assert listed["total"] == 1050 and listed["items"][-1]["record"] == "C002100,bad,2100"
    assert "C000002,bad,2" in cli("runs", "rejects", run_id).stdout
    unknown = cli("runs", "rejects", "424242.1", ok=False)
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr
