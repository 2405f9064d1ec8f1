"""The web console in a real browser (Debian's Chromium via Playwright) against the four running services."""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import playwright.async_api as playwright_api
import pytest

from shared.mongo import MongoClient
from shared.notification_records import NotificationStatus
from tests.e2e.conftest import RunningSystem
from tests.support.api import contacts_table, import_job, wait_for_run
from tests.support.notifications import notification, store_notifications
from tests.support.servers import Sshd

pytestmark = pytest.mark.e2e

expect = playwright_api.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SHOTS = Path("test-artifacts") / "console"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install chromium (make test does it)")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


def base_url(system: RunningSystem) -> str:
    return system.api_url.removesuffix("/api/v1")


@pytest.fixture
async def context(browser: Any, system: RunningSystem) -> AsyncIterator[Any]:
    """A fresh browser profile; fails the test if the page loads anything from outside the deployment."""
    base = base_url(system)
    context = await browser.new_context(base_url=base, viewport={"width": 1500, "height": 950})
    context.set_default_timeout(15_000)
    outside: list[str] = []
    context.on("request", lambda r: None if r.url.startswith((base, "data:")) else outside.append(r.url))
    yield context
    await context.close()
    assert outside == [], f"the console loaded resources from outside the deployment: {outside}"


async def sign_in(context: Any, token: str) -> Any:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="All jobs")).to_be_visible()
    return page


@pytest.fixture
async def page(context: Any, system: RunningSystem) -> AsyncIterator[Any]:
    page = await sign_in(context, system.token)
    yield page
    assert page.errors == [], f"JavaScript errors: {page.errors}"


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def write_contacts(sshd: Sshd, relative: str, count: int, *, bad_every: int = 0) -> None:
    path = sshd.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "email", "points"])
        for i in range(1, count + 1):
            bad = bad_every and i % bad_every == 0
            writer.writerow([f"C{i:06d}", "not-an-email" if bad else f"user{i}@example.com", str(i % 1000)])


async def new_job(api: httpx.AsyncClient, name: str, connection_id: int, path: str, table: str,
                  **extra: Any) -> dict[str, Any]:  # fmt: skip
    response = await api.post("/jobs", json=import_job(name, connection_id, path, table) | extra)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
async def table(api: httpx.AsyncClient, unique: str) -> str:
    name = f"console_{unique}"
    response = await api.post("/tables", json=contacts_table(name))
    assert response.status_code == 201, response.text
    return name


def job_row(page: Any, job_id: int) -> Any:
    return page.locator(f'.jobs-table tbody tr[data-job-id="{job_id}"]')


async def open_menu(row: Any) -> Any:
    """The row's actions menu, opened from its button."""
    await row.locator("button.menu-button").click()
    menu = row.get_by_role("menu")
    await expect(menu).to_be_visible()
    return menu


async def filter_jobs(page: Any, text: str) -> None:
    await page.get_by_label("Name", exact=True).fill(text)


# --- sign-in, session cookie, CSRF ------------------------------------------------------------------


async def test_sign_in_session_cookie_csrf_and_sign_out(context: Any, system: RunningSystem) -> None:
    page = await context.new_page()
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    await page.get_by_label("API token").fill("cnt_not-a-real-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#sign-in-error")).to_contain_text("not valid")

    page = await sign_in(context, system.token)
    cookie = next(c for c in await context.cookies() if c["name"] == "connect_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert system.token not in cookie["value"]  # an opaque session id, not the token
    await expect(page.locator("#user-name")).to_have_text("e2e-admin")

    # The cookie alone cannot change anything: a mutating request needs the session's CSRF token.
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    forged = await page.request.post("/api/v1/jobs/delete", data={"ids": [1], "confirm": False})
    assert forged.status == 403 and (await forged.json())["error"]["code"] == "forbidden"
    wrong = await page.request.post("/api/v1/jobs/delete", data={"ids": [1]}, headers={"X-CSRF-Token": "x"})
    assert wrong.status == 403
    allowed = await page.request.post(
        "/api/v1/jobs/delete", data={"ids": [2**40]}, headers={"X-CSRF-Token": csrf}
    )
    assert allowed.status not in (401, 403)  # authenticated and CSRF-checked; the API judges the rest
    assert (await page.request.get("/api/v1/jobs")).status == 200  # reading needs no CSRF token

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    old = {"connect_session": cookie["value"]}
    async with httpx.AsyncClient(base_url=base_url(system), cookies=old) as client:  # gone server-side
        stale = await client.get("/api/v1/jobs")
        assert stale.status_code == 401
        console = await client.get("/")
        assert console.status_code == 303 and console.headers["location"] == "/sign-in"
        page_headers = (await client.get("/sign-in")).headers
        assert "default-src 'self'" in page_headers["content-security-policy"]


# --- create from the form, run now, progress, Success, execution log ------------------------------


async def test_create_import_job_run_now_progress_success_and_log(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    # Long enough (about 8 s on an idle machine) that the live progress is on screen for several of the list's
    # 1 s polls; 5 rejects make a partial run.
    write_contacts(sshd, f"{unique}/contacts.csv", 40_000, bad_every=8_000)
    taken = await new_job(api, f"taken {unique}", sftp_connection, f"{unique}/contacts.csv", table)

    await page.get_by_role("link", name="New import job").click()
    await expect(page.get_by_role("heading", name="New import job")).to_be_visible()
    form = page.locator("#job-form")
    await form.get_by_label("Name", exact=True).fill(taken["name"])  # a name already taken
    await form.get_by_label("Connection").select_option(str(sftp_connection))
    await form.get_by_label("File path or pattern").fill(f"{unique}/contacts.csv")
    for i, (column, field) in enumerate([("id", "customer_id"), ("email", "email"), ("points", "points")]):
        if i:
            await form.get_by_role("button", name="Add a column").click()
        await form.get_by_label(f"Column {i + 1}", exact=True).fill(column)
        await form.get_by_label(f"Field {i + 1}", exact=True).fill(field)
    await form.get_by_label("Table", exact=True).fill(table)
    await expect(form.locator("#spec-preview")).to_contain_text(f'"table": "{table}"')
    await shot(page, "job-form")
    await form.get_by_role("button", name="Create import job").click()
    name_input = form.get_by_label("Name", exact=True)
    await expect(name_input).to_have_attribute("aria-invalid", "true")  # the API's error, inline
    await expect(form.locator('[data-error-for="name"]')).to_contain_text("already")

    name = f"From the form {unique}"
    await name_input.fill(name)
    await form.get_by_role("button", name="Create import job").click()
    await expect(page.get_by_role("heading", name=re.compile(f"Job \\d+: {name}"))).to_be_visible()
    job_id = int(re.search(r"#/jobs/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    created = (await api.get(f"/jobs/{job_id}")).json()
    assert (
        created["spec"]["source"]["path"] == f"{unique}/contacts.csv" and created["created_by"] == "e2e-admin"
    )

    await page.get_by_role("link", name="All jobs").first.click()
    await filter_jobs(page, unique)
    row = job_row(page, job_id)
    await (await open_menu(row)).locator("button.run-now").click()
    progress = row.locator(".run-progress progress")
    await expect(progress).to_be_visible(timeout=20_000)  # live, without reloading
    await expect(row.locator(".run-progress .rate")).to_contain_text(
        re.compile(r"[1-9][\d,]* records"), timeout=20_000
    )
    await shot(page, "all-jobs")

    await page.get_by_role("link", name="Completed jobs").click()
    run_row = page.locator(f'.runs-table tr[data-run-id="{job_id}.1"]')
    await expect(run_row.locator(".status-cell")).to_contain_text("Success", timeout=150_000)
    await expect(run_row.locator(".status-cell")).to_contain_text("5 rejects")
    await shot(page, "completed-jobs")

    await run_row.get_by_role("link", name=name).click()
    log = page.locator("#execution-log")
    await expect(log).to_contain_text("finished", timeout=20_000)
    await expect(log).to_contain_text("file found")
    await expect(page.locator("#count-read")).to_have_text("40,000")
    await expect(page.locator("#count-rejected")).to_have_text("5")
    await expect(page.locator("#rejects-file")).to_contain_text("rejects")
    await shot(page, "execution-log")


# --- copy ----------------------------------------------------------------------------------------


async def test_copy_is_offered_for_inactive_jobs_only(
    page: Any, api: httpx.AsyncClient, sftp_connection: int, table: str, unique: str
) -> None:
    inactive = await new_job(api, f"inactive {unique}", sftp_connection, "x.csv", table, active=False)
    active = await new_job(api, f"active {unique}", sftp_connection, "x.csv", table)
    await filter_jobs(page, unique)
    menu = await open_menu(job_row(page, active["id"]))
    await expect(menu.get_by_role("menuitem", name=f"Deactivate active {unique}")).to_be_visible()
    await expect(menu.get_by_role("menuitem", name=re.compile("^Copy"))).to_have_count(0)
    await page.keyboard.press("Escape")
    await expect(menu).to_be_hidden()
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = await page.request.post(
        f"/api/v1/jobs/{active['id']}/copy", data={"name": "nope"}, headers={"X-CSRF-Token": csrf}
    )
    assert refused.status == 409  # the API refuses it too

    await (
        (await open_menu(job_row(page, inactive["id"])))
        .get_by_role("menuitem", name=re.compile("^Copy"))
        .click()
    )
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Name of the copy").fill(f"copied {unique}")
    await dialog.get_by_role("button", name="Copy").click()
    copy_row = page.locator(".jobs-table tbody tr", has_text=f"copied {unique}")
    await expect(copy_row).to_have_count(1)
    await expect(copy_row).to_contain_text("Inactive")

    await (
        (await open_menu(job_row(page, inactive["id"])))
        .get_by_role("menuitem", name=re.compile("^Copy"))
        .click()
    )
    await page.keyboard.press("Escape")  # the dialog is keyboard-usable: Escape cancels
    await expect(dialog).to_be_hidden()
    jobs = (await api.get("/jobs", params={"name": unique})).json()["items"]
    assert sorted(j["name"] for j in jobs) == sorted(
        [f"inactive {unique}", f"active {unique}", f"copied {unique}"]
    )


# --- shift-click multi-delete --------------------------------------------------------------------


async def test_shift_click_selects_a_range_and_deletes_after_one_confirmation(
    page: Any, api: httpx.AsyncClient, sftp_connection: int, table: str, unique: str
) -> None:
    jobs = [await new_job(api, f"bulk {unique} {i}", sftp_connection, "x.csv", table) for i in range(4)]
    await filter_jobs(page, f"bulk {unique}")
    rows = page.locator(".jobs-table tbody tr")
    await expect(rows).to_have_count(4)
    await rows.nth(0).locator("td").nth(1).click()
    await rows.nth(2).locator("td").nth(1).click(modifiers=["Shift"])
    selected = page.locator('.jobs-table tbody tr[aria-selected="true"]')
    await expect(selected).to_have_count(3)
    await expect(page.locator(".jobs-table tbody tr.selected")).to_have_count(3)
    ids = [int(await selected.nth(i).get_attribute("data-job-id")) for i in range(3)]
    delete = page.get_by_role("button", name="Delete selected (3)")
    await delete.click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Delete 3 jobs?")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(rows).to_have_count(4)  # cancelled: nothing deleted
    await delete.click()
    await dialog.get_by_role("button", name="Delete").click()
    await expect(rows).to_have_count(1)
    remaining = (await api.get("/jobs", params={"name": f"bulk {unique}"})).json()["items"]
    assert [j["id"] for j in remaining] == [j["id"] for j in jobs if j["id"] not in ids]


# --- stop a long run -----------------------------------------------------------------------------


async def test_stop_a_long_run_after_confirmation(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/big.csv", 300_000)
    job = await new_job(api, f"long {unique}", sftp_connection, f"{unique}/big.csv", table)
    await filter_jobs(page, unique)
    row = job_row(page, job["id"])
    await (await open_menu(row)).locator("button.run-now").click()
    await expect(row.locator(".run-progress .rate")).to_contain_text(
        re.compile(r"[1-9][\d,]* records"), timeout=30_000
    )
    await (await open_menu(row)).get_by_role("menuitem", name=f"Stop long {unique}").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text(f"Stop long {unique}?")
    await dialog.get_by_role("button", name="Stop").click()
    run = await wait_for_run(api, f"{job['id']}.1", timeout=60)
    assert run["status"] == "stopped", run
    assert 0 < run["counts"]["read"] < 300_000

    await page.get_by_role("link", name="Completed jobs").click()
    status = page.locator(f'.runs-table tr[data-run-id="{job["id"]}.1"] .status-cell')
    await expect(status).to_contain_text("Failed")
    await expect(status.locator(".badge.stopped")).to_have_text("Stopped")  # shown distinctly


# --- job detail: schedule preview and the chart of the last runs -----------------------------------


async def test_job_detail_shows_fire_times_with_dst_and_a_chart_of_runs(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/few.csv", 20, bad_every=7)
    schedule = {
        "type": "recurring",
        "rule": {"kind": "monthly", "day": 28, "at": "02:30"},
        "timezone": "Europe/Paris",
    }
    job = await new_job(
        api, f"monthly {unique}", sftp_connection, f"{unique}/few.csv", table, schedule=schedule
    )
    for number in (1, 2):
        assert (await api.post(f"/jobs/{job['id']}/run")).status_code == 202
        await wait_for_run(api, f"{job['id']}.{number}")
    preview = (await api.get(f"/jobs/{job['id']}/schedule-preview", params={"count": 10})).json()

    await page.goto(f"/#/jobs/{job['id']}")
    fires = page.locator("#schedule-preview tbody tr")
    await expect(fires).to_have_count(len(preview["fires"]))
    flagged = sum(1 for fire in preview["fires"] if fire["dst_change"])
    await expect(page.locator("#schedule-preview .dst")).to_have_count(flagged)
    bars = page.locator("#runs-chart svg rect.bar")
    await expect(bars).to_have_count(2)
    await expect(page.locator("#runs-chart svg rect.bar.rejects")).to_have_count(2)  # rejects highlighted
    await expect(page.locator("#runs-chart svg circle")).to_have_count(2)  # records read
    history = page.locator("#job-history tbody td.audit-action")  # the audit trail, newest first
    await expect(history).to_have_text(["run-now", "run-now", "created"])
    await shot(page, "job-detail")


async def test_job_detail_pages_the_schedule_preview_forward_and_back(
    page: Any, api: httpx.AsyncClient, sftp_connection: int, table: str, unique: str
) -> None:
    schedule = {"type": "recurring", "rule": {"kind": "daily", "at": "02:30"}, "timezone": "Europe/Paris"}
    job = await new_job(api, f"daily {unique}", sftp_connection, f"{unique}/x.csv", table, schedule=schedule)
    fires = (await api.get(f"/jobs/{job['id']}/schedule-preview", params={"count": 20})).json()["fires"]
    shown = lambda i: fires[i]["local"].replace("T", " ")  # noqa: E731

    await page.goto(f"/#/jobs/{job['id']}")
    first_cell = page.locator("#schedule-preview tbody tr").first.locator("td").first
    await expect(first_cell).to_have_text(shown(0))
    await expect(page.locator("#preview-earlier")).to_be_disabled()
    await page.locator("#preview-later").click()
    await expect(first_cell).to_have_text(shown(10))  # the 11th fire: no gap, no repeat
    await page.locator("#preview-earlier").click()
    await expect(first_cell).to_have_text(shown(0))


async def test_a_spread_schedule_shows_its_offset_and_slots_and_its_form_field(
    page: Any, api: httpx.AsyncClient, sftp_connection: int, table: str, unique: str
) -> None:
    schedule = {"type": "recurring", "rule": {"kind": "every", "minutes": 60}, "spread_minutes": 20}
    job = await new_job(api, f"spread {unique}", sftp_connection, f"{unique}/x.csv", table, schedule=schedule)
    preview = (await api.get(f"/jobs/{job['id']}/schedule-preview", params={"count": 10})).json()
    offset = preview["spread_offset_seconds"]

    await page.goto(f"/#/jobs/{job['id']}")
    await expect(page.locator("#spread-offset")).to_contain_text(
        f"{offset // 60} min {offset % 60} s after each slot"
    )
    first = page.locator("#schedule-preview tbody tr").first.locator("td")
    await expect(first.nth(1)).to_have_text(preview["fires"][0]["utc"].replace("T", " "))
    await expect(first.nth(2)).to_have_text(preview["fires"][0]["slot"].replace("T", " "))
    await page.goto(f"/#/jobs/{job['id']}/edit")
    await expect(page.locator('input[data-field="schedule.spread_minutes"]')).to_have_value("20")


async def test_a_dated_import_shows_the_file_each_fire_reads_and_an_empty_file_run_reads_skipped(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    schedule = {"type": "recurring", "rule": {"kind": "daily", "at": "00:30"}, "timezone": "Asia/Tokyo"}
    job = await new_job(api, f"dated {unique}", sftp_connection, f"{unique}/c_{{date}}.csv", table,
                        schedule=schedule)  # fmt: skip
    source = {**job["spec"]["source"], "on_empty": "skip"}
    edited = await api.patch(
        f"/jobs/{job['id']}", json={"version": job["version"], "spec": {**job["spec"], "source": source}}
    )
    assert edited.status_code == 200, edited.text
    job = edited.json()
    fires = (await api.get(f"/jobs/{job['id']}/schedule-preview", params={"count": 10})).json()["fires"]
    today = datetime.now(ZoneInfo("Asia/Tokyo")).strftime("%Y%m%d")
    write_contacts(sshd, f"{unique}/c_{today}.csv", 0)  # a header only: empty
    assert (await api.post(f"/jobs/{job['id']}/run")).status_code == 202
    assert (await wait_for_run(api, f"{job['id']}.1"))["status"] == "skipped"

    await page.goto(f"/#/jobs/{job['id']}")
    await expect(page.locator("#next-source-path")).to_have_text(job["next_source_path"])
    await expect(page.locator("#schedule-preview .source-path").first).to_have_text(fires[0]["source_path"])
    await page.goto(f"/#/runs/{job['id']}.1")
    await expect(page.locator(".run-status .badge.skipped")).to_have_text("Skipped")


# --- groups: create, reorder, run --------------------------------------------------------------------


async def test_group_create_reorder_run_and_member_runs(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/g.csv", 10)
    first = await new_job(api, f"step A {unique}", sftp_connection, f"{unique}/g.csv", table)
    second = await new_job(api, f"step B {unique}", sftp_connection, f"{unique}/g.csv", table)
    await page.get_by_role("link", name="Groups").click()
    await page.get_by_role("link", name="New group").click()
    form = page.locator("#group-form")
    await form.get_by_label("Name", exact=True).fill(f"group {unique}")
    for job in (first, second):
        await form.get_by_label("Add a job").select_option(str(job["id"]))
        await form.get_by_role("button", name="Add", exact=True).click()
    members = form.locator("#group-members li")
    await expect(members).to_have_count(2)
    await form.get_by_role("button", name=f"Move step B {unique} up").click()
    await expect(members.nth(0)).to_contain_text("step B")
    await shot(page, "group-form")
    await form.get_by_role("button", name="Create group").click()
    row = page.locator(".groups-table tbody tr", has_text=f"group {unique}")
    await expect(row).to_contain_text(f"step B {unique} → step A {unique}")
    group_id = int(await row.get_attribute("data-group-id"))
    assert [m["id"] for m in (await api.get(f"/groups/{group_id}")).json()["jobs"]] == [
        second["id"],
        first["id"],
    ]
    await shot(page, "groups")

    probe = await api.post(f"/groups/{group_id}/run")
    assert probe.status_code == 202, probe.text
    group_run_id = probe.json()["group_run_id"]
    assert group_run_id.startswith(f"{group_id}.")
    group_run = page.locator(f'.group-runs-table tr[data-group-run-id="{group_run_id}"]')
    await expect(group_run).to_be_visible(timeout=20_000)
    await expect(group_run).to_contain_text("Success", timeout=60_000)
    await expect(group_run.get_by_role("link")).to_have_count(3)  # the group run and its two member runs
    # by its address: with low ids a member run's "JobID.RunID" can read the same as the group run's
    await group_run.locator(f'a[href="#/group-runs/{group_run_id}"]').click()
    member_rows = page.locator(".runs-table tbody tr")
    await expect(member_rows).to_have_count(2)
    await expect(member_rows.nth(0)).to_contain_text(f"step B {unique}")
    await expect(member_rows.nth(0)).to_contain_text(group_run_id)


# --- rejected records on the run page ------------------------------------------------------------


async def test_a_partial_runs_rejects_and_notifications_are_listed_on_its_page(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str,
    system: RunningSystem, mongo: MongoClient,
) -> None:  # fmt: skip
    write_contacts(sshd, f"{unique}/bad.csv", 120, bad_every=2)  # 60 rejects: two pages of 50
    job = await new_job(api, f"rejects {unique}", sftp_connection, f"{unique}/bad.csv", table)
    run_id = (await api.post(f"/jobs/{job['id']}/run")).json()["run_id"]
    assert (await wait_for_run(api, run_id))["status"] == "partial"
    # As the logsink stores them (the job has no rules, so it sends none of its own for this run).
    await store_notifications(mongo, system.settings.database("logsink"), [
        notification(run_id, rule=0, channel_id=1, kind="smtp", status=NotificationStatus.FAILED, attempts=5,
                     outcome="partial", channel_name="ops mail", last_error="SMTP 550: mailbox unavailable"),
        notification(run_id, rule=1, channel_id=2, outcome="partial", channel_name="ops hook"),
    ])  # fmt: skip

    await page.goto(f"/#/runs/{run_id}")
    sent = page.locator("#run-notifications tbody tr")
    await expect(sent).to_have_count(2)
    await expect(sent.nth(0).locator("td")).to_have_text([
        "ops mail (e-mail)", "ops@example.com", "partial", "Failed after 5 attempts, given up", "5",
        "SMTP 550: mailbox unavailable", "",
    ])  # fmt: skip
    await expect(sent.nth(1).locator("td").nth(3)).to_have_text("Sent")
    rejects = page.locator("#run-rejects")
    await expect(rejects.get_by_role("heading")).to_have_text("Rejected records (60)")
    rows = rejects.locator("tbody tr")
    await expect(rows).to_have_count(50)
    first = rows.nth(0)  # record 2 is on line 3 (the header is line 1)
    await expect(first.locator("td")).to_have_text(
        ["3", "email", "'not-an-email' is not an email address", "C000002,not-an-email,2"]
    )
    await shot(page, "run-rejects")
    await rejects.get_by_role("button", name="Next rejects").click()
    await expect(rows).to_have_count(10)
    await expect(rows.last.locator("td").first).to_have_text("121")
    await expect(rejects.get_by_role("button", name="Next rejects")).to_be_disabled()

    clean = await new_job(api, f"clean {unique}", sftp_connection, f"{unique}/good.csv", table)
    write_contacts(sshd, f"{unique}/good.csv", 3)
    clean_run = (await api.post(f"/jobs/{clean['id']}/run")).json()["run_id"]
    assert (await wait_for_run(api, clean_run))["status"] == "succeeded"
    await page.goto(f"/#/runs/{clean_run}")
    await expect(page.locator("#execution-log")).to_contain_text("finished")
    await expect(page.locator("#run-rejects")).to_be_hidden()
    await expect(page.locator("#run-notifications")).to_contain_text("No notifications for this run.")


# --- issue 16: All jobs at 1366x768, row menus, times with their zone, bulk trigger -----------------

SHOWN_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (UTC|GMT[+-]\d{1,2}(:\d{2})?|[A-Z]{2,5})$")

LAYOUT = """() => {
  const inView = (el) => { const r = el.getBoundingClientRect(); return r.left >= 0 && r.right <= innerWidth; };
  const table = document.querySelector(".jobs-table");
  const headers = [...table.querySelectorAll("thead th")].filter((th) => th.getClientRects().length > 0);
  return {
    scrollWidth: document.documentElement.scrollWidth, innerWidth,
    tableInView: inView(table),
    headers: headers.map((th) => th.textContent.trim()),
    headersOutOfView: headers.filter((th) => !inView(th)).map((th) => th.textContent.trim()),
  };
}"""


async def test_all_jobs_fits_a_1366_screen_and_the_row_menu_runs_copies_and_deletes(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/menu.csv", 5)
    daily = {"type": "recurring", "rule": {"kind": "daily", "at": "02:30"}, "timezone": "Europe/Paris"}
    long_name = "Nightly import of loyalty programme members from the partner drop"
    jobs = [
        await new_job(
            api,
            f"{long_name} {unique} {i:02d}",
            sftp_connection,
            f"{unique}/menu.csv",
            table,
            schedule=daily,
            expires_at="2031-01-01T00:00:00Z",
            active=i != 0,
        )
        for i in range(12)
    ]
    inactive, active = jobs[0], jobs[1]
    await page.set_viewport_size({"width": 1366, "height": 768})
    await filter_jobs(page, unique)
    await expect(page.locator(".jobs-table tbody tr")).to_have_count(12)
    layout = await page.evaluate(LAYOUT)
    assert layout["scrollWidth"] <= layout["innerWidth"], layout  # no horizontal scroll
    assert layout["tableInView"] and layout["headersOutOfView"] == [], layout
    assert {"Schedule type", "Expiration date", "Next run", "Actions"} <= set(layout["headers"]), layout
    await shot(page, "all-jobs-1366")

    next_run = job_row(page, active["id"]).locator("td.time time").nth(1)  # Created on, then Next run
    assert SHOWN_TIME.match((await next_run.inner_text()).replace("\n", " ").strip())

    # The menu by keyboard: Enter opens it on its first action, arrows move, Escape closes it.
    row = job_row(page, active["id"])
    button = row.locator("button.menu-button")
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(button).to_have_attribute("aria-expanded", "true")
    items = row.get_by_role("menuitem")
    await expect(items.first).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(items.nth(1)).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(row.get_by_role("menu")).to_be_hidden()
    await expect(button).to_have_attribute("aria-expanded", "false")
    await expect(button).to_be_focused()

    await (await open_menu(row)).get_by_role("menuitem", name=f"Run {active['name']} now").click()
    assert (await wait_for_run(api, f"{active['id']}.1"))["ended"]  # the menu's Run now made a run

    copy_name = f"copied {unique}"
    await (
        (await open_menu(job_row(page, inactive["id"])))
        .get_by_role("menuitem", name=re.compile("^Copy"))
        .click()
    )
    await page.get_by_role("dialog").get_by_label("Name of the copy").fill(copy_name)
    await page.get_by_role("dialog").get_by_role("button", name="Copy").click()
    await expect(page.locator(".jobs-table tbody tr", has_text=copy_name)).to_have_count(1)

    doomed = jobs[2]
    await (
        (await open_menu(job_row(page, doomed["id"])))
        .get_by_role("menuitem", name=f"Delete {doomed['name']}")
        .click()
    )
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(job_row(page, doomed["id"])).to_have_count(0)
    assert (await api.get(f"/jobs/{doomed['id']}")).status_code == 404

    # Narrower: the lowest-priority columns go (still on the job page), and nothing scrolls sideways.
    await page.set_viewport_size({"width": 1024, "height": 768})
    narrow = await page.evaluate(LAYOUT)
    assert narrow["scrollWidth"] <= narrow["innerWidth"] and narrow["headersOutOfView"] == [], narrow
    assert "Expiration date" not in narrow["headers"] and "Name" in narrow["headers"], narrow
    await job_row(page, active["id"]).get_by_role("link", name=active["name"]).click()
    expiration = page.locator("dl.summary dt", has_text="Expiration date").locator(
        "xpath=following-sibling::dd[1]"
    )
    assert SHOWN_TIME.match((await expiration.inner_text()).replace("\n", " ").strip())


async def test_run_selected_runs_up_to_five_jobs_and_shows_each_ones_result(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/bulk.csv", 5)
    jobs = [
        await new_job(
            api, f"bulk run {unique} {i}", sftp_connection, f"{unique}/bulk.csv", table, active=i != 3
        )
        for i in range(6)
    ]
    await filter_jobs(page, f"bulk run {unique}")
    for job in jobs:
        await job_row(page, job["id"]).get_by_role("checkbox").check()
    run_selected = page.locator("#run-selected")
    await expect(run_selected).to_have_text("Run selected (6)")
    await expect(run_selected).to_be_disabled()  # more than 5
    await expect(page.locator("#run-selected-why")).to_contain_text("at most 5")
    await job_row(page, jobs[5]["id"]).get_by_role("checkbox").uncheck()
    await expect(run_selected).to_be_enabled()
    await expect(page.locator("#run-selected-why")).to_be_hidden()
    await run_selected.click()

    results = page.locator("#bulk-results li")
    await expect(results).to_have_count(5)
    await expect(page.locator("#bulk-results h3")).to_have_text("Run selected: 4 of 5 started")
    refused = page.locator(f'#bulk-results li[data-job-id="{jobs[3]["id"]}"]')
    await expect(refused).to_have_attribute("data-outcome", "refused")
    await expect(refused).to_contain_text("inactive")  # the refusal's reason
    for job in [*jobs[:3], jobs[4]]:
        result = page.locator(f'#bulk-results li[data-job-id="{job["id"]}"]')
        await expect(result).to_contain_text(f"run {job['id']}.1 requested")
        assert (await wait_for_run(api, f"{job['id']}.1"))["ended"]
    assert (await api.get("/runs", params={"job_id": jobs[5]["id"]})).json()["total"] == 0
    await shot(page, "bulk-run")


async def test_job_form_says_errors_next_to_the_field_and_notices_do_not_outlive_their_page(
    page: Any, api: httpx.AsyncClient, sftp_connection: int, table: str, unique: str
) -> None:
    job = await new_job(api, f"form {unique}", sftp_connection, f"{unique}/x.csv", table)
    await filter_jobs(page, unique)
    await (
        (await open_menu(job_row(page, job["id"])))
        .get_by_role("menuitem", name=f"Deactivate {job['name']}")
        .click()
    )
    notice = page.locator("#notice")
    await expect(notice).to_contain_text("deactivated")
    await page.goto(f"/#/jobs/{job['id']}/edit")
    await expect(page.get_by_role("heading", name=f"Edit job {job['id']}: {job['name']}")).to_be_visible()
    await expect(notice).to_be_empty()  # the list's notice stayed on the list

    form = page.locator("#job-form")
    timeout_field = form.get_by_label(re.compile("^Run timeout"))
    await timeout_field.fill("two hours")
    await form.get_by_role("button", name="Save").click()
    await expect(timeout_field).to_have_attribute("aria-invalid", "true")
    inline = form.locator('[data-error-for="spec.max_duration"]')
    await expect(inline).to_be_visible()
    said = await inline.inner_text()
    assert said.startswith("'two hours' is not an ISO 8601 duration"), said  # in words, without the path
    assert await timeout_field.get_attribute("aria-describedby") == await inline.get_attribute("id")
    same_field = form.locator(".field", has=page.locator('[data-error-for="spec.max_duration"]'))
    await expect(same_field.get_by_label(re.compile("^Run timeout"))).to_have_count(1)  # next to it
    await expect(form.locator(".form-error")).to_contain_text(re.compile("^Run timeout"))

    # every field the API names is marked, each with its own message, and all are in the summary
    name_field = form.get_by_label("Name", exact=True)
    await name_field.fill("")
    await form.get_by_role("button", name="Save").click()
    await expect(name_field).to_have_attribute("aria-invalid", "true")
    await expect(form.locator('[data-error-for="name"]')).to_be_visible()
    await expect(timeout_field).to_have_attribute("aria-invalid", "true")
    await expect(inline).to_be_visible()
    summary = form.locator(".form-error")
    await expect(summary).to_contain_text(re.compile("^Name: .+\nRun timeout", re.DOTALL))
    await name_field.fill(job["name"])

    await timeout_field.fill("PT2H")
    await form.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", name=f"Job {job['id']}: {job['name']}")).to_be_visible()
    await expect(notice).to_contain_text(f"Saved {job['name']}")  # said for the page it led to
    await page.get_by_role("link", name="← All jobs").click()
    await expect(page.get_by_role("heading", name="All jobs")).to_be_visible()
    await expect(notice).to_be_empty()


CHART_LABELS = """() => {
  const svg = document.querySelector("#runs-chart svg").getBoundingClientRect();
  return {
    svg: [svg.left, svg.top, svg.right, svg.bottom],
    labels: [...document.querySelectorAll("#runs-chart svg text")].map((t) => {
      const r = t.getBoundingClientRect();
      return { text: t.textContent, box: [r.left, r.top, r.right, r.bottom] };
    }),
  };
}"""


async def test_the_runs_chart_labels_do_not_overlap_and_run_times_say_their_zone(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/chart.csv", 3)
    job = await new_job(api, f"chart {unique}", sftp_connection, f"{unique}/chart.csv", table)
    runs = 10  # before: up to 10 runs, a label under every one, 18 px apart and wider than that
    for number in range(1, runs + 1):
        assert (await api.post(f"/jobs/{job['id']}/run")).status_code == 202
        await wait_for_run(api, f"{job['id']}.{number}")

    await page.goto(f"/#/jobs/{job['id']}")
    await expect(page.locator("#runs-chart svg rect.bar")).to_have_count(runs)
    drawn = await page.evaluate(CHART_LABELS)
    labels = drawn["labels"]
    run_labels = [label["text"] for label in labels if "." in label["text"]]
    assert f"{job['id']}.{runs}" in run_labels and len(run_labels) >= 3, labels  # the newest is labelled
    left, top, right, bottom = drawn["svg"]
    for label in labels:
        x0, y0, x1, y1 = label["box"]
        assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, (label, drawn["svg"])
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            apart = a["box"][2] <= b["box"][0] or b["box"][2] <= a["box"][0]
            apart = apart or a["box"][3] <= b["box"][1] or b["box"][3] <= a["box"][1]
            assert apart, (a, b)
    await shot(page, "job-chart")

    await page.goto(f"/#/runs/{job['id']}.{runs}")
    await expect(page.locator("#execution-log")).to_contain_text("finished")
    start = page.locator("dl.summary dt", has_text="Start time").locator("xpath=following-sibling::dd[1]")
    assert SHOWN_TIME.match((await start.inner_text()).replace("\n", " ").strip())
    logged_at = await page.locator("#execution-log li time").first.inner_text()
    assert SHOWN_TIME.match(logged_at), logged_at


async def test_dry_run_button_shows_what_a_run_would_do_and_nothing_is_written(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/try.csv", 12, bad_every=4)  # 3 rejects: lines 5, 9, 13
    job = await new_job(api, f"try {unique}", sftp_connection, f"{unique}/try.csv", table, active=False)

    await page.goto(f"/#/jobs/{job['id']}")
    await page.get_by_role("button", name=f"Dry run {job['name']}").click()

    await expect(page).to_have_url(re.compile(rf"#/runs/{job['id']}\.1$"))
    await expect(page.locator("#dry-run-note")).to_contain_text("nothing was written")
    await expect(page.locator("#execution-log")).to_contain_text("would insert 9", timeout=30_000)
    summary = page.locator("#run-summary")
    await expect(summary.locator("#count-inserted")).to_have_text("9")
    await expect(summary.locator("#count-rejected")).to_have_text("3")
    await expect(summary.get_by_text("Would be inserted", exact=True)).to_be_visible()
    await expect(page.locator("#run-rejects tbody tr")).to_have_count(3)
    await shot(page, "dry-run")
    run = await wait_for_run(api, f"{job['id']}.1")
    assert run["dry_run"] is True and run["counts"]["inserted"] == 9
    records = (await api.get("/runs", params={"job_id": job["id"]})).json()
    assert [r["trigger"] for r in records["items"]] == ["dry_run"]
    assert sorted(p.name for p in (sshd.root / unique).iterdir()) == ["try.csv"]  # no rejects file
