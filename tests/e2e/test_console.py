"""The web console in a real browser (Debian's Chromium via Playwright) against the four running services."""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import playwright.async_api as playwright_api
import pytest

from tests.e2e.conftest import RunningSystem
from tests.support.api import contacts_table, import_job, wait_for_run
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
    # Long enough (tens of seconds) for the progress bar to be seen; 5 rejects make a partial run.
    # Long enough (several seconds) that the live progress is on screen for more than one poll.
    write_contacts(sshd, f"{unique}/contacts.csv", 60_000, bad_every=12_000)
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
    await row.locator("button.run-now").click()
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
    await expect(page.locator("#count-read")).to_have_text("60,000")
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
    await expect(job_row(page, active["id"]).get_by_role("button", name="Copy")).to_have_count(0)
    csrf = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = await page.request.post(
        f"/api/v1/jobs/{active['id']}/copy", data={"name": "nope"}, headers={"X-CSRF-Token": csrf}
    )
    assert refused.status == 409  # the API refuses it too

    await job_row(page, inactive["id"]).get_by_role("button", name="Copy").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Name of the copy").fill(f"copied {unique}")
    await dialog.get_by_role("button", name="Copy").click()
    copy_row = page.locator(".jobs-table tbody tr", has_text=f"copied {unique}")
    await expect(copy_row).to_have_count(1)
    await expect(copy_row).to_contain_text("Inactive")

    await job_row(page, inactive["id"]).get_by_role("button", name="Copy").click()
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
    await row.locator("button.run-now").click()
    await expect(row.locator(".run-progress .rate")).to_contain_text(
        re.compile(r"[1-9][\d,]* records"), timeout=30_000
    )
    await row.get_by_role("button", name="Stop").click()
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
    await group_run.get_by_role("link", name=group_run_id).click()
    member_rows = page.locator(".runs-table tbody tr")
    await expect(member_rows).to_have_count(2)
    await expect(member_rows.nth(0)).to_contain_text(f"step B {unique}")
    await expect(member_rows.nth(0)).to_contain_text(group_run_id)


# --- rejected records on the run page ------------------------------------------------------------


async def test_a_partial_runs_rejects_are_listed_and_paged_on_its_page(
    page: Any, api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, table: str, unique: str
) -> None:
    write_contacts(sshd, f"{unique}/bad.csv", 120, bad_every=2)  # 60 rejects: two pages of 50
    job = await new_job(api, f"rejects {unique}", sftp_connection, f"{unique}/bad.csv", table)
    run_id = (await api.post(f"/jobs/{job['id']}/run")).json()["run_id"]
    assert (await wait_for_run(api, run_id))["status"] == "partial"

    await page.goto(f"/#/runs/{run_id}")
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
