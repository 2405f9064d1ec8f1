// The Connect page: All jobs, Completed jobs, Groups, job details, execution logs.
// Plain JavaScript, no libraries: it calls /api/v1 with the session cookie and the session's CSRF token.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
const CSRF = meta("csrf-token");
const ROLE = meta("connect-role");
const CAN_OPERATE = ROLE === "operator" || ROLE === "admin";
const view = document.getElementById("view");
const notice = document.getElementById("notice");

// --- small helpers -------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

const pad = (n) => String(n).padStart(2, "0");
// Times are shown in the browser's zone and say which ("UTC", "GMT+1", "EST"): a bare "02:30" is ambiguous.
const zoneName = (d) => new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(d).find((p) => p.type === "timeZoneName")?.value ?? "";
function timeParts(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return null;
  return [`${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`, `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zoneName(d)}`];
}
// Date-and-time inputs are in the browser's zone: their labels name it (the IANA name, right in summer and winter).
const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
const inZone = (label) => `${label} (${BROWSER_ZONE})`;
function fmtTime(iso) {
  if (!iso) return "";
  return timeParts(iso)?.join(" ") ?? iso;
}
function timeCell(iso) {
  if (!iso) return "";
  const parts = timeParts(iso);
  if (!parts) return iso;
  // Date and time are separate unbreakable halves, so a narrow column wraps between them only.
  return h("time", { datetime: iso, title: iso }, h("span", { class: "nb" }, parts[0]), " ", h("span", { class: "nb" }, parts[1]));
}
function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60), sec = Math.round(seconds % 60);
  if (m < 60) return `${m} min ${sec} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
const fmtNum = (n) => (n ?? 0).toLocaleString("en-US");
const SCHEDULE_TYPES = { one_time: "One-time", recurring: "Recurring", on_demand: "On-demand", on_event: "On event" };
const JOB_TYPES = { import: "Import", export: "Export" };

// A notice belongs to the page it was said on (route() clears it); `next` keeps one said just before
// navigating ("Created job 12") for the page that follows, and only that one.
function say(message, kind = "ok", { next = false } = {}) {
  notice.textContent = message;
  notice.className = kind === "error" ? "error" : "";
  say.keepForNext = next;
  clearTimeout(say.timer);
  say.timer = setTimeout(clearNotice, 8000);
}
function clearNotice() {
  clearTimeout(say.timer);
  notice.textContent = "";
  notice.className = "";
}

class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message || `request failed (${status})`);
    this.status = status;
    this.code = error.code;
    this.field = error.field;
    this.errors = body?.errors ?? []; // every problem (a 422 names each invalid field), the first included
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.assign("/sign-in");
    throw new ApiError(401, { error: { message: "signed out" } });
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const query = (params) => {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(key, v);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
};

// --- dialogs (native <dialog>: focus is trapped, Escape cancels) ----------------------------------

const dialog = document.getElementById("dialog");
function ask({ title, message = "", ok = "OK", danger = false, input = null }) {
  document.getElementById("dialog-title").textContent = title;
  document.getElementById("dialog-message").textContent = message;
  const okButton = document.getElementById("dialog-ok");
  okButton.textContent = ok;
  okButton.className = danger ? "primary danger" : "primary";
  const inputBox = document.getElementById("dialog-input");
  const field = document.getElementById("dialog-value");
  inputBox.hidden = !input;
  field.required = !!input;
  if (input) {
    document.getElementById("dialog-label").textContent = input.label;
    field.value = input.value ?? "";
  }
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") resolve(null);
      else resolve(input ? field.value.trim() : true);
    }, { once: true });
    dialog.showModal();
    (input ? field : okButton).focus();
    if (input) field.select();
  });
}

// --- routing -------------------------------------------------------------------------------------

let cleanups = [];
function onLeave(fn) { cleanups.push(fn); }
function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (error) { if (!(error instanceof ApiError)) console.error(error); }
    if (!stopped) timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
  };
  timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
  onLeave(() => { stopped = true; clearTimeout(timer); });
}

const routes = [
  [/^#\/jobs\/new$/, (_, q) => jobForm(null, q.get("type") || "import"), "jobs"],
  [/^#\/jobs\/(\d+)\/edit$/, (m) => jobForm(Number(m[1])), "jobs"],
  [/^#\/jobs\/(\d+)$/, (m) => jobDetail(Number(m[1])), "jobs"],
  [/^#\/completed$/, () => completedJobs(), "completed"],
  [/^#\/runs\/(\d+\.\d+)$/, (m) => runDetail(m[1]), "completed"],
  [/^#\/groups\/new$/, () => groupForm(null), "groups"],
  [/^#\/groups\/(\d+)\/edit$/, (m) => groupForm(Number(m[1])), "groups"],
  [/^#\/group-runs\/(\d+\.\d+)$/, (m) => groupRunDetail(m[1]), "groups"],
  [/^#\/groups$/, () => groupsTab(), "groups"],
  [/^#\/jobs$/, () => allJobs(), "jobs"],
];

async function route() {
  for (const fn of cleanups.splice(0)) fn();
  if (say.keepForNext) say.keepForNext = false; else clearNotice();
  openMenu = null;
  const [path, search = ""] = (location.hash || "#/jobs").split("?");
  const found = routes.find(([re]) => re.test(path)) ?? routes[routes.length - 1];
  const [re, render, tab] = found;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.tab === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    await render(path.match(re) || [], new URLSearchParams(search));
  } catch (error) {
    view.replaceChildren(h("p", { class: "form-error", role: "alert" }, error.message));
  }
}

window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", async () => {
  await fetch("/console/session", { method: "DELETE", headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin" });
  window.location.assign("/sign-in");
});

// --- run status and progress ---------------------------------------------------------------------

function runStatus(run) {
  // The label is the API's `run_status`; a stop and the rejects are named beside it.
  if (run.status === "running") return progressBar(run);
  const label = run.run_status;
  const rejected = run.counts?.rejected ?? 0;
  const parts = [h("span", { class: `badge ${label.toLowerCase()}` }, label)];
  if (run.status === "stopped") parts.push(" ", h("span", { class: "badge stopped", title: "Stopped by a user" }, "Stopped"));
  if (rejected > 0) parts.push(" ", h("span", { class: "badge rejects" }, `${fmtNum(rejected)} rejects`));
  return h("span", { class: "run-status", dataset: { status: run.status } }, parts);
}

function progressBar(run) {
  const p = run.progress;
  const total = p?.bytes_total;
  const bar = h("progress", { max: 100, "aria-label": `Progress of run ${run.run_id}` });
  if (p && total) bar.value = Math.min(100, Math.round((100 * p.bytes_read) / total));
  const records = p ? p.records_read : 0;
  const rate = p ? Math.round(p.records_per_second) : 0;
  return h("span", { class: "progress run-progress", dataset: { runId: run.run_id } },
    h("span", { class: "badge running" }, "Running"), bar,
    h("span", { class: "rate" }, `${fmtNum(records)} records · ${fmtNum(rate)} rec/s`));
}

// --- sortable, filterable tables -----------------------------------------------------------------

function sortHeader(label, key, sort, onSort) {
  const th = h("th", { scope: "col" });
  if (!key) { th.append(label); return th; }
  const direction = sort.key === key ? (sort.dir > 0 ? "ascending" : "descending") : "none";
  th.setAttribute("aria-sort", direction);
  th.append(h("button", { type: "button", class: "sort", onclick: () => onSort(key) }, label));
  return th;
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined || a === "") return 1;
  if (b === null || b === undefined || b === "") return -1;
  return a < b ? -1 : 1;
}

// --- All jobs tab --------------------------------------------------------------------------------

const jobsState = { name: "", job_type: "", state: "", sort: { key: "id", dir: -1 }, selected: new Set(), anchor: null };
// [label, sort key, priority]: app.css hides priority 3 columns on narrower screens, then priority 2;
// the job page shows every one of them.
const JOB_COLUMNS = [
  ["Job ID", "id", 1], ["Group", "group", 2], ["Name", "name", 1], ["Job Type", "job_type", 1], ["Created on", "created_at", 3],
  ["By", "created_by", 3], ["Job state", "state", 1], ["Next run", "next_run", 1], ["Previous run", "previous_run", 2],
  ["Schedule type", "schedule_type", 2], ["Expiration date", "expiration_date", 3],
];
const BULK_RUN_MAX = 5;  // POST /jobs/run takes 1 to 5 ids

async function allJobs() {
  const st = jobsState;
  const tbody = h("tbody");
  const table = h("table", { class: "grid jobs-table", "aria-label": "All jobs" });
  const deleteSelected = h("button", { type: "button", class: "primary danger", id: "delete-selected", hidden: true, onclick: () => deleteJobs([...st.selected]) });
  const runSelected = h("button", { type: "button", class: "primary", id: "run-selected", hidden: true, "aria-describedby": "run-selected-why", onclick: () => runJobs([...st.selected]) });
  const runSelectedWhy = h("span", { class: "muted", id: "run-selected-why", hidden: true });
  const bulkResults = h("section", { class: "panel", id: "bulk-results", "aria-labelledby": "bulk-results-title", hidden: true });
  const count = h("span", { class: "muted", id: "jobs-count" });
  let jobs = [], running = new Map(), inFlight = 0, lastRendered = "";

  const filterInput = h("input", { id: "filter-name", type: "search", value: st.name, placeholder: "part of the name" });
  const typeSelect = h("select", { id: "filter-type" }, h("option", { value: "" }, "All"), h("option", { value: "import" }, "Import"), h("option", { value: "export" }, "Export"));
  const stateSelect = h("select", { id: "filter-state" }, h("option", { value: "" }, "All"), h("option", { value: "active" }, "Active"), h("option", { value: "inactive" }, "Inactive"));
  typeSelect.value = st.job_type; stateSelect.value = st.state;
  let debounce;
  filterInput.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(() => { st.name = filterInput.value.trim(); load(true); }, 250); });
  typeSelect.addEventListener("change", () => { st.job_type = typeSelect.value; load(true); });
  stateSelect.addEventListener("change", () => { st.state = stateSelect.value; load(true); });

  view.replaceChildren(
    h("h2", {}, "All jobs"),
    h("div", { class: "toolbar" },
      h("div", { class: "filters", role: "search" },
        h("div", {}, h("label", { for: "filter-name" }, "Name"), filterInput),
        h("div", {}, h("label", { for: "filter-type" }, "Job Type"), typeSelect),
        h("div", {}, h("label", { for: "filter-state" }, "Job state"), stateSelect)),
      h("span", { class: "spacer" }),
      count,
      CAN_OPERATE && runSelectedWhy,
      CAN_OPERATE && runSelected,
      CAN_OPERATE && deleteSelected,
      CAN_OPERATE && h("a", { href: "#/jobs/new?type=import", class: "button primary" }, "New import job"),
      CAN_OPERATE && h("a", { href: "#/jobs/new?type=export", class: "button" }, "New export job")),
    h("p", { class: "muted" }, "Tick jobs (or click a row; Shift-click selects a range, Ctrl-click adds one) to run or delete them together."),
    bulkResults,
    table,
  );

  function header() {
    return h("thead", {}, h("tr", {},
      h("th", { scope: "col", class: "pick" }, h("span", { class: "visually-hidden" }, "Selected")),
      JOB_COLUMNS.map(([label, key, priority]) => {
        const th = sortHeader(label, key, st.sort, (k) => {
          st.sort = { key: k, dir: st.sort.key === k ? -st.sort.dir : 1 };
          render(true);
        });
        th.classList.add(`p${priority}`);
        return th;
      }),
      h("th", { scope: "col", class: "actions" }, "Actions")));
  }

  function sorted() {
    const { key, dir } = st.sort;
    return [...jobs].sort((a, b) => dir * compare(a[key], b[key]) || b.id - a.id);
  }

  function select(jobId, event) {
    const ids = sorted().map((j) => j.id);
    if (event.shiftKey && st.anchor !== null && ids.includes(st.anchor)) {
      const [from, to] = [ids.indexOf(st.anchor), ids.indexOf(jobId)].sort((x, y) => x - y);
      if (!(event.ctrlKey || event.metaKey)) st.selected.clear();
      for (const id of ids.slice(from, to + 1)) st.selected.add(id);
    } else if (event.ctrlKey || event.metaKey) {
      if (st.selected.has(jobId)) st.selected.delete(jobId); else st.selected.add(jobId);
      st.anchor = jobId;
    } else {
      const only = st.selected.size === 1 && st.selected.has(jobId);
      st.selected.clear();
      if (!only) st.selected.add(jobId);
      st.anchor = jobId;
    }
    render(true);
  }

  function row(job) {
    const run = running.get(job.id);
    const tr = h("tr", {
      dataset: { jobId: job.id }, class: st.selected.has(job.id) ? "selected" : "",
      "aria-selected": st.selected.has(job.id) ? "true" : "false", tabindex: 0,
      onclick: (event) => { if (!event.target.closest("button, a, input, select, .menu-wrap")) select(job.id, event); },
      onkeydown: (event) => { if (event.key === " " && event.target === tr) { event.preventDefault(); select(job.id, event); } },
    },
      h("td", { class: "pick" }, h("input", { type: "checkbox", checked: st.selected.has(job.id), "aria-label": `Select ${job.name}`, dataset: { focusKey: `${job.id}:pick` },
        onclick: (event) => select(job.id, { shiftKey: event.shiftKey, ctrlKey: true }) })),
      h("td", { class: "num p1" }, job.id),
      h("td", { class: "p2 wrap" }, job.group ?? ""),
      h("td", { class: "p1 name" }, h("a", { href: `#/jobs/${job.id}`, class: "job-name" }, job.name), run ? [" ", progressBar(run)] : ""),
      h("td", { class: "p1" }, JOB_TYPES[job.job_type] ?? job.job_type, job.partner_feed ? h("span", { class: "muted" }, " (partner feed)") : ""),
      h("td", { class: "p3 time" }, timeCell(job.created_at)),
      h("td", { class: "p3 wrap" }, job.created_by),
      h("td", { class: "p1" }, h("span", { class: `badge ${job.state}` }, job.state === "active" ? "Active" : "Inactive")),
      h("td", { class: "p1 time" }, timeCell(job.next_run)),
      h("td", { class: "p2 time" }, timeCell(job.previous_run)),
      h("td", { class: "p2" }, SCHEDULE_TYPES[job.schedule_type] ?? job.schedule_type),
      h("td", { class: "p3 time" }, timeCell(job.expiration_date)),
      h("td", { class: "actions" }, CAN_OPERATE ? actionsMenu(job, jobActions(job, !!run, () => load(true))) : ""),
    );
    return tr;
  }

  function render(force = false) {
    const list = sorted();
    const snapshot = JSON.stringify([list, [...running.values()], [...st.selected], st.sort]);
    if (!force && snapshot === lastRendered) return;
    lastRendered = snapshot;
    for (const id of [...st.selected]) if (!jobs.some((j) => j.id === id)) st.selected.delete(id);
    // A re-render (the list polls) must not take the focus or an open row menu away from the user.
    const focusKey = document.activeElement?.dataset?.focusKey;
    table.replaceChildren(header(), tbody);
    tbody.replaceChildren(...(list.length ? list.map(row) : [h("tr", {}, h("td", { colspan: JOB_COLUMNS.length + 2, class: "muted" }, "No jobs."))]));
    if (focusKey) tbody.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
    const n = st.selected.size;
    deleteSelected.hidden = n === 0;
    deleteSelected.textContent = `Delete selected (${n})`;
    runSelected.hidden = n === 0;
    runSelected.textContent = `Run selected (${n})`;
    runSelected.disabled = n > BULK_RUN_MAX;
    runSelectedWhy.hidden = n <= BULK_RUN_MAX;
    runSelectedWhy.textContent = `Run at most ${BULK_RUN_MAX} jobs together (${n} selected)`;
  }

  async function load(force = false) {
    const [page, runs] = await Promise.all([
      api("GET", `/jobs${query({ name: st.name, job_type: st.job_type, state: st.state, limit: 500, sort: "-id" })}`),
      api("GET", `/runs${query({ status: ["running", "queued"], limit: 200 })}`),
    ]);
    jobs = page.items;
    running = new Map(runs.items.filter((r) => r.status === "running").map((r) => [r.job_id, r]));
    inFlight = runs.items.length;  // queued ones too: a run just requested starts within the second
    count.textContent = page.total > jobs.length ? `${jobs.length} of ${page.total} jobs` : `${page.total} jobs`;
    render(force);
  }

  async function deleteJobs(ids) {
    if (!ids.length) return;
    const names = jobs.filter((j) => ids.includes(j.id)).map((j) => `${j.id} ${j.name}`);
    const ok = await ask({ title: `Delete ${ids.length} job${ids.length > 1 ? "s" : ""}?`, message: `${names.join(", ")}. Records they loaded are not deleted.`, ok: "Delete", danger: true });
    if (!ok) return;
    try {
      const result = await api("POST", "/jobs/delete", { ids, confirm: true });
      say(`Deleted ${result.deleted.length} job(s).`);
      st.selected.clear();
    } catch (error) { say(error.message, "error"); }
    await load(true);
  }

  // Bulk trigger: each job is checked on its own, so the answer is one result per job, shown in order.
  async function runJobs(ids) {
    if (!ids.length || ids.length > BULK_RUN_MAX) return;
    const names = new Map(jobs.map((j) => [j.id, j.name]));
    let results;
    try {
      results = (await api("POST", "/jobs/run", { ids })).results;
    } catch (error) { say(error.message, "error"); return; }
    runRequestedAt = Date.now();
    const started = results.filter((r) => r.run_id).length;
    bulkResults.hidden = false;
    bulkResults.replaceChildren(
      h("h3", { id: "bulk-results-title" }, `Run selected: ${started} of ${results.length} started`),
      h("ul", { class: "bulk-results" }, results.map((r) => h("li", { dataset: { jobId: r.job_id, outcome: r.run_id ? "started" : "refused" } },
        `Job ${r.job_id} ${names.get(r.job_id) ?? ""}: `,
        r.run_id ? ["run ", h("a", { href: `#/runs/${r.run_id}` }, r.run_id), " requested"] : h("span", { class: "field-error" }, `not run: ${r.error?.message ?? "refused"}`)))),
      h("button", { type: "button", onclick: () => { bulkResults.hidden = true; } }, "Dismiss"));
    say(`${started} of ${results.length} runs requested.`, started === results.length ? "ok" : "error");
    await load(true);
  }

  await load(true);
  // Fast while runs are in flight, and for a while after a run now: the run's record appears once the
  // logsink has recorded the request, and a short run may start and end between two slow polls.
  every(() => (inFlight || Date.now() < runRequestedAt + 10_000 ? 1000 : 4000), () => load(false));
}

let runRequestedAt = 0;  // when this console last asked for a run now (see the jobs list's polling)

// --- a row's actions in a menu (a disclosure button; Arrow keys move, Escape closes) ----------------

let openMenu = null;  // the job id whose row menu is open: it stays open across the list's re-renders
function actionsMenu(job, items) {
  const key = `${job.id}:menu`;
  const list = h("div", { class: "menu", role: "menu", id: `menu-${job.id}`, "aria-label": `Actions for ${job.name}`, hidden: openMenu !== job.id });
  const button = h("button", { type: "button", class: "menu-button", "aria-haspopup": "menu", "aria-controls": list.id,
    "aria-expanded": String(openMenu === job.id), "aria-label": `Actions for ${job.name}`, dataset: { focusKey: key } }, "Actions ▾");
  const entries = () => [...list.querySelectorAll("[role=menuitem]:not([disabled])")];
  const setOpen = (open, focus = null) => {
    if (open) closeMenus();
    openMenu = open ? job.id : null;
    list.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (focus === "first") entries()[0]?.focus();
    if (focus === "last") entries().at(-1)?.focus();
    if (focus === "button") button.focus();
  };
  list._close = () => setOpen(false);
  for (const item of items) {
    item.setAttribute("role", "menuitem");
    item.dataset.focusKey = `${job.id}:${item.className}`;
    // The action runs after the menu has closed (it may open a dialog or re-render the list).
    item.addEventListener("click", () => setOpen(false), { capture: true });
    list.append(item);
  }
  button.addEventListener("click", () => setOpen(list.hidden, list.hidden ? "first" : null));
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") { event.preventDefault(); setOpen(true, event.key === "ArrowDown" ? "first" : "last"); }
  });
  list.addEventListener("keydown", (event) => {
    const all = entries(), at = all.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: all.length - 1 };
    if (event.key in moves) { event.preventDefault(); all[(moves[event.key] + all.length) % all.length]?.focus(); }
    else if (event.key === "Escape") { event.preventDefault(); event.stopPropagation(); setOpen(false, "button"); }
    else if (event.key === "Tab") setOpen(false);
  });
  return h("div", { class: "menu-wrap" }, button, list);
}
function closeMenus() {
  for (const menu of document.querySelectorAll(".menu[role=menu]:not([hidden])")) menu._close?.();
  openMenu = null;
}
document.addEventListener("click", (event) => { if (!event.target.closest?.(".menu-wrap")) closeMenus(); });

function jobActions(job, isRunning, reload) {
  const act = async (fn, done) => {
    try { await fn(); say(done); } catch (error) { say(error.message, "error"); }
    await reload();
  };
  const buttons = [h("a", { href: `#/jobs/${job.id}/edit`, class: "button edit", "aria-label": `Edit ${job.name}` }, "Edit")];
  if (!job.partner_feed) {
    buttons.push(h("button", { type: "button", class: "run-now", "aria-label": `Run ${job.name} now`, disabled: isRunning || job.state !== "active",
      title: job.state !== "active" ? "Activate the job to run it" : "",
      onclick: () => act(async () => {
        const r = await api("POST", `/jobs/${job.id}/run`);
        runRequestedAt = Date.now();
        say(`Run ${r.run_id} requested.`);
      }, "Run requested.") }, "Run now"));
  }
  if (isRunning) {
    buttons.push(h("button", { type: "button", class: "stop danger", "aria-label": `Stop ${job.name}`, onclick: async () => {
      if (!await ask({ title: `Stop ${job.name}?`, message: "The running run stops; what it loaded so far stays.", ok: "Stop", danger: true })) return;
      await act(() => api("POST", `/jobs/${job.id}/stop?confirm=true`), `Stopping ${job.name}…`);
    } }, "Stop"));
  }
  if (job.state === "inactive" && !job.partner_feed) {
    buttons.push(h("button", { type: "button", class: "copy", "aria-label": `Copy ${job.name}`, onclick: async () => {
      const name = await ask({ title: `Copy ${job.name}`, message: "The copy is created inactive.", ok: "Copy", input: { label: "Name of the copy", value: `Copy of ${job.name}`.slice(0, 100) } });
      if (!name) return;
      await act(() => api("POST", `/jobs/${job.id}/copy`, { name }), `Copied as “${name}”.`);
    } }, "Copy"));
  }
  buttons.push(job.state === "active"
    ? h("button", { type: "button", class: "deactivate", "aria-label": `Deactivate ${job.name}`, onclick: () => act(() => api("POST", `/jobs/${job.id}/deactivate`), `${job.name} deactivated.`) }, "Deactivate")
    : h("button", { type: "button", class: "activate", "aria-label": `Activate ${job.name}`, onclick: () => act(() => api("POST", `/jobs/${job.id}/activate`), `${job.name} activated.`) }, "Activate"));
  buttons.push(h("button", { type: "button", class: "delete danger", "aria-label": `Delete ${job.name}`, onclick: async () => {
    if (!await ask({ title: `Delete ${job.name}?`, message: "Records it loaded are not deleted.", ok: "Delete", danger: true })) return;
    await act(() => api("DELETE", `/jobs/${job.id}?confirm=true`), `${job.name} deleted.`);
  } }, "Delete"));
  return buttons;
}

// --- job detail: summary, schedule preview, chart of the last 30 runs ------------------------------

async function jobDetail(jobId) {
  const job = await api("GET", `/jobs/${jobId}`);
  const [preview, runs] = await Promise.all([
    api("GET", `/jobs/${jobId}/schedule-preview?count=10`).catch(() => null),
    api("GET", `/runs${query({ job_id: jobId, limit: 30, sort: "-requested_at" })}`),
  ]);
  const runsBox = h("div", { id: "job-runs" });
  const chartBox = h("div", { class: "chart", id: "runs-chart" });
  const actions = h("div", { class: "toolbar" });
  const item = (label, value) => [h("dt", {}, label), h("dd", {}, value ?? "")];
  view.replaceChildren(
    h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")),
    h("h2", {}, `Job ${job.id}: ${job.name}`),
    actions,
    h("section", { class: "panel" }, h("dl", { class: "summary" },
      item("Job ID", job.id), item("Group", job.group), item("Job Type", JOB_TYPES[job.job_type]), item("Job state", job.state),
      item("Created on", timeCell(job.created_at)), item("By", job.created_by), item("Next run", timeCell(job.next_run)),
      item("Previous run", timeCell(job.previous_run)), item("Schedule type", SCHEDULE_TYPES[job.schedule_type]),
      item("Expiration date", timeCell(job.expiration_date)), item("Version", job.version), item("Partner feed", job.partner_feed ? "yes" : "no"),
      ...(job.next_source_path ? item("Next file", h("code", { id: "next-source-path" }, job.next_source_path)) : []))),
    h("section", { class: "panel", "aria-labelledby": "preview-title" }, h("h3", { id: "preview-title" }, "Next fire times"), schedulePager(jobId, job.schedule, preview)),
    h("section", { class: "panel", "aria-labelledby": "chart-title" }, h("h3", { id: "chart-title" }, "Last 30 runs"), chartBox),
    h("section", { class: "panel", "aria-labelledby": "runs-title" }, h("h3", { id: "runs-title" }, "Runs"), runsBox),
    h("section", { class: "panel" }, h("h3", {}, "Specification"), h("pre", { class: "spec" }, JSON.stringify({ spec: job.spec, schedule: job.schedule }, null, 2))),
    jobHistory(jobId),
  );
  async function refresh() {
    const [fresh, latest] = await Promise.all([api("GET", `/jobs/${jobId}`), api("GET", `/runs${query({ job_id: jobId, limit: 30, sort: "-requested_at" })}`)]);
    const isRunning = latest.items.some((r) => !r.ended);
    actions.replaceChildren(...(CAN_OPERATE ? [...jobActions(fresh, isRunning, refresh), ...dryRunButton(fresh)] : []));
    chartBox.replaceChildren(runsChart(latest.items));
    runsBox.replaceChildren(runsTable(latest.items, { compact: true }));
    return isRunning;
  }
  runsBox.replaceChildren(runsTable(runs.items, { compact: true }));
  let active = await refresh();
  every(() => (active ? 1000 : 5000), async () => { active = await refresh(); });
}

// The job's history from the audit trail (issue #19): who changed or ran it, when, and which fields.
function jobHistory(jobId) {
  const box = h("div", { id: "job-history" }, "Loading…");
  api("GET", `/audit${query({ kind: "job", item_id: jobId, limit: 20 })}`).then((page) => {
    const rows = page.items.map((e) => h("tr", {},
      h("td", {}, timeCell(e.at)), h("td", {}, e.actor), h("td", { class: "audit-action" }, e.action),
      h("td", {}, e.after_version ?? e.before_version ?? ""),
      h("td", {}, Object.keys(e.changes).join(", ") || Object.values(e.detail).join(", "))));
    box.replaceChildren(rows.length ? h("table", {}, h("thead", {}, h("tr", {}, ...["When", "By", "Action", "Version", "Fields"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ...rows)) : "No changes recorded.");
  }, () => box.replaceChildren("History unavailable."));
  return h("section", { class: "panel", "aria-labelledby": "history-title" }, h("h3", { id: "history-title" }, "History"), box);
}

// Dry run (imports): reads the current file and checks every row, writes nothing; its run page shows the
// would-insert / would-update / unchanged / would-reject counts when it ends, and its rejects below.
function dryRunButton(job) {
  if (job.job_type !== "import" || job.partner_feed) return [];
  return [h("button", { type: "button", class: "dry-run", "aria-label": `Dry run ${job.name}`,
    title: "Read the current file and check every row; nothing is written, no file moved",
    onclick: async () => {
      try {
        const r = await api("POST", `/jobs/${job.id}/dry-run`);
        say(`Dry run ${r.run_id} requested.`);
        // Its record appears once the logsink has recorded the request: open the run page then.
        for (let tries = 0; tries < 40; tries++) {
          if (await api("GET", `/runs/${r.run_id}`).then(() => true, () => false)) break;
          await new Promise((done) => setTimeout(done, 250));
        }
        location.hash = `#/runs/${r.run_id}`;
      } catch (error) { say(error.message, "error"); }
    } }, "Dry run")];
}

// Pages of 10 fires; "Later" starts after the last fire shown (`next_from`), "Earlier" goes back a page.
function schedulePager(jobId, schedule, first) {
  const box = h("div", { id: "schedule-pager" });
  const starts = [null]; // the `from` of each page on the way here; null = now
  const show = (preview) => {
    const pager = h("div", { class: "toolbar" },
      h("button", { type: "button", id: "preview-earlier", disabled: starts.length < 2, onclick: () => go(-1) }, "← Earlier"),
      h("button", { type: "button", id: "preview-later", disabled: !preview?.next_from, onclick: () => go(1, preview.next_from) }, "Later →"));
    box.replaceChildren(schedulePreview(preview, schedule), ...(preview?.fires.length ? [pager] : []));
  };
  async function go(step, from) {
    if (step > 0) starts.push(from); else starts.pop();
    const start = starts[starts.length - 1];
    show(await api("GET", `/jobs/${jobId}/schedule-preview${query({ count: 10, from: start })}`));
  }
  show(first);
  return box;
}

function schedulePreview(preview, schedule) {
  if (!preview || !preview.fires.length) {
    const why = { on_demand: "On-demand: runs only when someone clicks Run now.", on_event: `On event: runs when the trigger “${schedule.trigger}” fires.` };
    return h("p", { class: "muted" }, why[schedule.type] ?? "No future fire times.");
  }
  const offset = preview.spread_offset_seconds ?? 0;
  const spread = offset ? [h("th", {}, "Slot (UTC)")] : [];
  const dated = preview.fires.some((f) => f.source_path); // an import with date tokens: the file each fire reads
  const table = h("table", { class: "grid", id: "schedule-preview" },
    h("thead", {}, h("tr", {}, h("th", {}, `Local time (${preview.timezone})`), h("th", {}, "UTC"), ...spread, h("th", {}, "Daylight saving"),
      ...(dated ? [h("th", {}, "Reads")] : []))),
    h("tbody", {}, preview.fires.map((f) => h("tr", { class: f.dst_change ? "dst-change" : "" },
      h("td", {}, f.local.replace("T", " ")), h("td", {}, f.utc.replace("T", " ")),
      ...(offset ? [h("td", { class: "muted" }, (f.slot ?? "").replace("T", " "))] : []),
      h("td", {}, f.dst_change ? h("span", { class: "dst", title: "A daylight-saving change falls on this slot" }, "⚠ DST change") : ""),
      ...(dated ? [h("td", {}, h("code", { class: "source-path" }, f.source_path ?? ""))] : [])))));
  if (!offset) return table;
  const note = `Spread: starts ${Math.floor(offset / 60)} min ${offset % 60} s after each slot (stable for this schedule).`;
  return h("div", {}, h("p", { class: "muted", id: "spread-offset" }, note), table);
}

function runsChart(runsNewestFirst) {
  const runs = [...runsNewestFirst].reverse().filter((r) => r.ended);
  if (!runs.length) return h("p", { class: "muted" }, "No finished runs yet.");
  // Labels are monospace so their width is known before they are drawn (0.6 em a character): the
  // margins fit the axis labels, and run ids are labelled only as often as they fit side by side.
  const AXIS_FONT = 10, RUN_FONT = 9, CHAR = 0.6, GAP = 8;
  const textWidth = (text, size) => String(text).length * size * CHAR;
  const maxDur = Math.max(...runs.map((r) => r.duration_seconds ?? 0), 0.001);
  const maxRec = Math.max(...runs.map((r) => r.counts?.read ?? 0), 1);
  const W = 640, H = 170, top = 10, bottom = 26;
  const left = Math.max(46, Math.ceil(Math.max(textWidth(fmtDuration(maxDur), AXIS_FONT), textWidth("0 s", AXIS_FONT)) + 10));
  const right = Math.max(46, Math.ceil(Math.max(textWidth(fmtNum(maxRec), AXIS_FONT), textWidth("0 rec", AXIS_FONT)) + 10));
  const plotW = W - left - right, plotH = H - top - bottom;
  const slot = plotW / 30, barW = Math.max(4, slot * 0.6);
  const labelWidth = Math.max(...runs.map((r) => textWidth(r.run_id, RUN_FONT)));
  const labelEvery = Math.max(1, Math.ceil((labelWidth + GAP) / slot));
  const label = (attrs, text, size) => s("text", { ...attrs, "font-size": size, "font-family": "ui-monospace, Menlo, Consolas, monospace", fill: "#5d6b7a", class: "chart-label" }, text);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-labelledby": "chart-desc" });
  svg.append(s("desc", { id: "chart-desc" }, `Duration (bars) and records read (dots) of the last ${runs.length} runs; runs with rejects in orange, failed runs in red.`));
  svg.append(s("line", { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, stroke: "#9aa5b1" }));
  svg.append(label({ x: left - 6, y: top + 8, "text-anchor": "end" }, fmtDuration(maxDur), AXIS_FONT));
  svg.append(label({ x: left - 6, y: top + plotH, "text-anchor": "end" }, "0 s", AXIS_FONT));
  svg.append(label({ x: left + plotW + 6, y: top + 8 }, fmtNum(maxRec), AXIS_FONT));
  svg.append(label({ x: left + plotW + 6, y: top + plotH }, "0 rec", AXIS_FONT));
  const points = [];
  runs.forEach((run, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    const hBar = Math.max(1, ((run.duration_seconds ?? 0) / maxDur) * plotH);
    const rejected = run.counts?.rejected ?? 0;
    const failed = run.status === "failed" || run.status === "stopped";
    const fill = failed ? "#d9534f" : rejected > 0 ? "#f59e0b" : "#5b9bd5";
    const bar = s("rect", { x, y: top + plotH - hBar, width: barW, height: hBar, fill, class: `bar ${failed ? "failed" : rejected ? "rejects" : "ok"}`, "data-run-id": run.run_id });
    bar.append(s("title", {}, `${run.run_id} · ${run.status} · ${fmtDuration(run.duration_seconds)} · ${fmtNum(run.counts?.read)} records${rejected ? ` · ${fmtNum(rejected)} rejects` : ""}`));
    svg.append(bar);
    const cx = x + barW / 2, cy = top + plotH - ((run.counts?.read ?? 0) / maxRec) * plotH;
    points.push(`${cx},${cy}`);
    // Counted from the newest run, so the latest one is always labelled.
    if ((runs.length - 1 - i) % labelEvery === 0) svg.append(label({ x: cx, y: H - 8, "text-anchor": "middle" }, run.run_id, RUN_FONT));
  });
  svg.append(s("polyline", { points: points.join(" "), fill: "none", stroke: "#1d2530", "stroke-width": 1 }));
  for (const p of points) { const [cx, cy] = p.split(","); svg.append(s("circle", { cx, cy, r: 2.5, fill: "#1d2530" })); }
  return h("div", {}, svg, h("div", { class: "legend" },
    h("span", {}, h("span", { class: "swatch sw-ok" }), "Duration"), h("span", {}, h("span", { class: "swatch sw-rej" }), "With rejects"),
    h("span", {}, h("span", { class: "swatch sw-fail" }), "Failed / stopped"), h("span", {}, h("span", { class: "swatch sw-rec" }), "Records read")));
}

// --- Completed jobs tab --------------------------------------------------------------------------

const RUN_COLUMNS = [
  ["Job ID.Run ID", "run_id"], ["Group ID.Run ID", null], ["Group", null], ["Name", "job_name"], ["Job type", null],
  ["Start time", "start_time"], ["Duration", "duration"], ["Run status", "status"],
];
const STATUS_FILTERS = { "": [], success: ["succeeded", "partial"], skipped: ["skipped"], failed: ["failed", "stopped"], stopped: ["stopped"], rejects: ["partial"], running: ["running", "queued"] };
const completedState = { job_id: "", group_id: "", status: "", job_type: "", started_from: "", started_to: "", sort: { key: "requested_at", dir: -1 }, offset: 0 };

function runsTable(runs, { compact = false, sort = null, onSort = null } = {}) {
  const columns = compact ? RUN_COLUMNS.filter(([label]) => !["Group", "Job type"].includes(label)) : RUN_COLUMNS;
  return h("table", { class: "grid runs-table", "aria-label": "Runs" },
    h("thead", {}, h("tr", {}, columns.map(([label, key]) => (sort ? sortHeader(label, key, sort, onSort) : h("th", { scope: "col" }, label))))),
    h("tbody", {}, runs.length ? runs.map((run) => h("tr", { dataset: { runId: run.run_id, status: run.status } },
      h("td", {}, h("a", { href: `#/runs/${run.run_id}` }, run.run_id)),
      h("td", {}, run.group_run_id ? h("a", { href: `#/group-runs/${run.group_run_id}` }, run.group_run_id) : ""),
      !compact && h("td", {}, run.group_name ?? ""),
      h("td", {}, h("a", { href: `#/runs/${run.run_id}`, class: "run-log-link", title: "Open the execution log" }, run.job_name ?? `job ${run.job_id}`)),
      !compact && h("td", {}, JOB_TYPES[run.job_type] ?? run.job_type ?? ""),
      h("td", {}, timeCell(run.start_time)),
      h("td", { class: "num" }, fmtDuration(run.duration_seconds)),
      h("td", { class: "status-cell" }, runStatus(run)),
    )) : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "No runs."))));
}

async function completedJobs() {
  const st = completedState;
  const tableBox = h("div", { id: "completed-table" });
  const pager = h("div", { class: "pager" });
  const field = (id, label, control) => h("div", {}, h("label", { for: id }, label), control);
  const input = (id, key, attrs = {}) => {
    const el = h("input", { id, value: st[key], ...attrs });
    el.addEventListener("change", () => { st[key] = el.value.trim(); st.offset = 0; load(); });
    return el;
  };
  const select = (id, key, options) => {
    const el = h("select", { id }, options.map(([value, label]) => h("option", { value }, label)));
    el.value = st[key];
    el.addEventListener("change", () => { st[key] = el.value; st.offset = 0; load(); });
    return el;
  };
  view.replaceChildren(
    h("h2", {}, "Completed jobs"),
    h("div", { class: "toolbar" }, h("div", { class: "filters", role: "search" },
      field("filter-job-id", "Job ID", input("filter-job-id", "job_id", { type: "number", min: 1, size: 6 })),
      field("filter-group-id", "Group ID", input("filter-group-id", "group_id", { type: "number", min: 1, size: 6 })),
      field("filter-status", "Run status", select("filter-status", "status", [["", "All"], ["success", "Success"], ["rejects", "Success with rejects"], ["failed", "Failed"], ["stopped", "Stopped"], ["skipped", "Skipped"], ["running", "Running"]])),
      field("filter-run-type", "Job type", select("filter-run-type", "job_type", [["", "All"], ["import", "Import"], ["export", "Export"]])),
      field("filter-from", "Started from", input("filter-from", "started_from", { type: "date" })),
      field("filter-to", "Started before", input("filter-to", "started_to", { type: "date" })))),
    tableBox, pager,
  );
  let anyRunning = false, last = "";
  async function load(force = true) {
    const sortKey = (st.sort.dir < 0 ? "-" : "") + st.sort.key;
    const page = await api("GET", `/runs${query({
      job_id: st.job_id, group_id: st.group_id, status: STATUS_FILTERS[st.status], job_type: st.job_type,
      started_from: st.started_from ? new Date(`${st.started_from}T00:00`).toISOString() : "",
      started_to: st.started_to ? new Date(`${st.started_to}T00:00`).toISOString() : "",
      sort: sortKey, offset: st.offset, limit: 50 })}`);
    anyRunning = page.items.some((r) => !r.ended);
    const snapshot = JSON.stringify(page);
    if (!force && snapshot === last) return;
    last = snapshot;
    tableBox.replaceChildren(runsTable(page.items, { sort: st.sort, onSort: (key) => { st.sort = { key, dir: st.sort.key === key ? -st.sort.dir : -1 }; load(); } }));
    pager.replaceChildren(
      h("button", { type: "button", disabled: st.offset === 0, onclick: () => { st.offset = Math.max(0, st.offset - 50); load(); } }, "Previous"),
      h("span", { class: "muted" }, page.total ? `${st.offset + 1}–${st.offset + page.items.length} of ${page.total}` : "0 runs"),
      h("button", { type: "button", disabled: st.offset + page.items.length >= page.total, onclick: () => { st.offset += 50; load(); } }, "Next"));
  }
  await load();
  every(() => (anyRunning ? 1000 : 5000), () => load(false));
}

// --- a run: counts, rejects file, progress and its execution log (live tail while running) ---------

async function runDetail(runId) {
  let run = await api("GET", `/runs/${runId}`);
  const summary = h("section", { class: "panel", id: "run-summary" });
  const log = h("ol", { class: "log", id: "execution-log", "aria-label": "Execution log", tabindex: 0 });
  const logState = h("p", { class: "muted", id: "log-state" });
  const actions = h("div", { class: "toolbar" });
  const rejectsBox = h("section", { class: "panel", id: "run-rejects", "aria-labelledby": "rejects-title", hidden: true });
  view.replaceChildren(
    h("p", {}, h("a", { href: "#/completed" }, "← Completed jobs")),
    h("h2", {}, `Run ${run.run_id}: `, h("a", { href: `#/jobs/${run.job_id}` }, run.job_name ?? `job ${run.job_id}`)),
    actions, summary,
    h("section", { class: "panel", "aria-labelledby": "log-title" }, h("h3", { id: "log-title" }, "Execution log"), logState, log),
    notificationsPanel(`/runs/${runId}`, () => run.ended),
    rejectsBox,
  );
  const item = (label, value) => [h("dt", {}, label), h("dd", {}, value ?? "")];
  function renderSummary() {
    const c = run.counts ?? {};
    const would = (label) => (run.dry_run ? `Would be ${label.toLowerCase()}` : label);  // a dry run's counts
    const note = run.dry_run ? [h("p", { class: "notice", id: "dry-run-note", role: "note" },
      "Dry run: nothing was written and no file was moved. The counts are what a real run would do.")] : [];
    summary.replaceChildren(...note, h("dl", { class: "summary" },
      item("Run status", runStatus(run)), item("Status", run.status),
      item("Group ID.Run ID", run.group_run_id ? h("a", { href: `#/group-runs/${run.group_run_id}` }, run.group_run_id) : ""), item("Group", run.group_name),
      item("Start time", timeCell(run.start_time)), item("Duration", fmtDuration(run.duration_seconds)),
      item("Trigger", run.trigger), item("Requested by", run.requested_by),
      item("Read", h("span", { id: "count-read" }, fmtNum(c.read))),
      item(would("Inserted"), h("span", { id: "count-inserted" }, fmtNum(c.inserted))),
      item(would("Updated"), h("span", { id: "count-updated" }, fmtNum(c.updated))),
      item("Unchanged", h("span", { id: "count-unchanged" }, fmtNum(c.unchanged ?? 0))),
      item(would("Rejected"), h("span", { id: "count-rejected" }, fmtNum(c.rejected))),
      ...(c.skipped ? item("Blank lines skipped", fmtNum(c.skipped)) : []),
      item("Rejects file", run.rejects_file ? h("code", { id: "rejects-file" }, run.rejects_file) : "none"),
      item("Executor", run.executor), item("Error", run.error ? h("span", { class: "field-error" }, run.error) : "")));
    actions.replaceChildren();
    if (CAN_OPERATE && !run.ended) {
      actions.append(h("button", { type: "button", class: "stop danger", onclick: async () => {
        if (!await ask({ title: `Stop run ${run.run_id}?`, message: "What it loaded so far stays.", ok: "Stop", danger: true })) return;
        try { await api("POST", `/jobs/${run.job_id}/stop?confirm=true`); say("Stopping…"); } catch (error) { say(error.message, "error"); }
      } }, "Stop"));
    }
  }
  renderSummary();
  every(1000, async () => {
    if (run.ended) return;
    run = await api("GET", `/runs/${runId}`);
    renderSummary();
  });

  const addLine = (line) => {
    log.append(h("li", { class: `lvl-${line.level}`, dataset: { seq: line.seq } },
      h("span", { class: "seq" }, line.seq), h("time", { datetime: line.at }, fmtTime(line.at)), `  ${line.level.toUpperCase().padEnd(7)} ${line.message}`,
      Object.keys(line.fields ?? {}).length ? h("span", { class: "muted" }, `  ${JSON.stringify(line.fields)}`) : ""));
  };
  const addMissing = (from, to) => log.append(h("li", { class: "missing", role: "note" }, `log lines missing: ${from}${to !== from ? `–${to}` : ""}`));
  const scroll = () => { log.scrollTop = log.scrollHeight; };

  const showRejects = () => rejectsTable(runId, rejectsBox, 0).catch((error) => say(error.message, "error"));
  if (run.ended) {
    showRejects();
    logState.textContent = "";
    let after = 0;
    for (let pages = 0; pages < 50; pages++) {
      const page = await api("GET", `/runs/${runId}/logs?after=${after}&limit=1000`);
      const events = [...page.lines.map((l) => [l.seq, () => addLine(l)]), ...page.missing.map(([a, b]) => [a, () => addMissing(a, b)])];
      events.sort((x, y) => x[0] - y[0]).forEach(([, add]) => add());
      if (page.complete || page.next_after <= after) break;
      after = page.next_after;
    }
    if (!log.children.length) logState.textContent = "No log lines.";
    return;
  }
  logState.textContent = "Following the log live…";
  const source = new EventSource(`/api/v1/runs/${runId}/logs/stream`);
  onLeave(() => source.close());
  source.addEventListener("line", (event) => { addLine(JSON.parse(event.data)); scroll(); });
  source.addEventListener("missing", (event) => { const d = JSON.parse(event.data); addMissing(d.from, d.to); scroll(); });
  source.addEventListener("status", (event) => { logState.textContent = `Following the log live… (${JSON.parse(event.data).status})`; });
  source.addEventListener("end", (event) => {
    source.close();
    logState.textContent = `Run ended: ${JSON.parse(event.data).status}.`;
    api("GET", `/runs/${runId}`).then((fresh) => { run = fresh; renderSummary(); });
    showRejects();
  });
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) logState.textContent = "The live log was interrupted; reload to read it."; };
}

// A run's rejected records (line, field, reason, the raw record), 50 a page; hidden when it has none.
async function rejectsTable(runId, box, offset) {
  const page = await api("GET", `/runs/${runId}/rejects${query({ offset, limit: 50 })}`);
  box.hidden = page.total === 0;
  if (!page.total) return;
  const go = (to) => () => rejectsTable(runId, box, to).catch((error) => say(error.message, "error"));
  const multi = page.items.some((r) => r.file > 1);
  const labels = [...(multi ? ["File"] : []), "Line", "Field", "Reason", "Record"];
  box.replaceChildren(
    h("h3", { id: "rejects-title" }, `Rejected records (${fmtNum(page.total)})`),
    h("table", { class: "grid rejects-table", "aria-label": "Rejected records" },
      h("thead", {}, h("tr", {}, labels.map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, page.items.map((r) => h("tr", { dataset: { file: r.file, line: r.line } },
        multi && h("td", { class: "num" }, r.file), h("td", { class: "num" }, r.line), h("td", {}, r.field),
        h("td", { class: "reason" }, r.reason), h("td", { class: "record" }, h("code", {}, r.record)))))),
    h("div", { class: "pager" },
      h("button", { type: "button", "aria-label": "Previous rejects", disabled: offset === 0, onclick: go(Math.max(0, offset - 50)) }, "Previous"),
      h("span", { class: "muted" }, `${fmtNum(offset + 1)}–${fmtNum(offset + page.items.length)} of ${fmtNum(page.total)}`),
      h("button", { type: "button", "aria-label": "Next rejects", disabled: offset + page.items.length >= page.total, onclick: go(offset + 50) }, "Next")));
}

// A run's (or group run's) notifications: channel, recipient, status in words, attempts, last error. Read
// again every 2 s until the run has ended and none is still on its way (the logsink sends them after the end).
const NOTIFICATION_BADGES = { sent: "success", failed: "failed", pending: "queued" };
function notificationsPanel(path, ended) {
  const box = h("section", { class: "panel", id: "run-notifications", "aria-labelledby": "notifications-title" });
  let settled = false;
  async function load() {
    const { items } = await api("GET", `${path}/notifications`);
    settled = ended() && items.every((n) => n.status !== "pending");
    const none = ended() ? "No notifications for this run." : "Notifications are sent once the run has ended.";
    box.replaceChildren(h("h3", { id: "notifications-title" }, "Notifications"), items.length
      ? h("table", { class: "grid notifications-table", "aria-label": "Notifications" },
        h("thead", {}, h("tr", {}, ["Channel", "Recipient", "Outcome", "Status", "Attempts", "Last error", "Sent at"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, items.map((n) => h("tr", { dataset: { notificationId: n.id, status: n.status } },
          h("td", {}, `${n.channel_name} `, h("span", { class: "muted" }, n.channel_kind === "smtp" ? "(e-mail)" : "(webhook)")),
          h("td", { class: "wrap" }, n.recipient), h("td", {}, n.outcome),
          h("td", {}, h("span", { class: `badge ${NOTIFICATION_BADGES[n.status] ?? "queued"}` }, n.status_text)),
          h("td", { class: "num" }, n.attempts), h("td", { class: "wrap last-error" }, n.last_error ?? ""),
          h("td", {}, timeCell(n.sent_at))))))
      : h("p", { class: "muted" }, none));
  }
  load().catch((error) => say(error.message, "error"));
  every(2000, async () => { if (!settled) await load(); });
  return box;
}

// --- Groups tab ----------------------------------------------------------------------------------

const groupsState = { sort: { key: "id", dir: -1 } };
const GROUP_COLUMNS = [
  ["Group ID", "id"], ["Created on", "created_at"], ["By", "created_by"], ["Name", "name"], ["Next run", "next_run"],
  ["Previous run", "previous_run"], ["Schedule type", "schedule_type"], ["Expiration date", "expiration_date"],
];

async function groupsTab() {
  const st = groupsState;
  const tableBox = h("div", { id: "groups-table" });
  const runsBox = h("div", { id: "group-runs" });
  view.replaceChildren(
    h("div", { class: "toolbar" }, h("h2", {}, "Groups"), h("span", { class: "spacer" }),
      CAN_OPERATE && h("a", { href: "#/groups/new", class: "button primary" }, "New group")),
    tableBox,
    h("h3", {}, "Group runs"), runsBox,
  );
  let groups = [], groupRuns = [], last = "";
  async function act(fn, done) {
    try { await fn(); say(done); } catch (error) { say(error.message, "error"); }
    await load(true);
  }
  function render() {
    const { key, dir } = st.sort;
    const list = [...groups].sort((a, b) => dir * compare(a[key], b[key]) || b.id - a.id);
    const runningGroups = new Set(groupRuns.filter((r) => !r.ended).map((r) => r.group_id));
    tableBox.replaceChildren(h("table", { class: "grid groups-table", "aria-label": "Groups" },
      h("thead", {}, h("tr", {}, GROUP_COLUMNS.map(([label, k]) => sortHeader(label, k, st.sort, (k2) => { st.sort = { key: k2, dir: st.sort.key === k2 ? -st.sort.dir : 1 }; render(); })), h("th", {}, "Jobs (in order)"), h("th", {}, "Actions"))),
      h("tbody", {}, list.length ? list.map((g) => h("tr", { dataset: { groupId: g.id } },
        h("td", { class: "num" }, g.id), h("td", {}, timeCell(g.created_at)), h("td", {}, g.created_by),
        h("td", {}, h("a", { href: `#/groups/${g.id}/edit` }, g.name), g.state === "inactive" ? h("span", { class: "badge inactive" }, " inactive") : ""),
        h("td", {}, timeCell(g.next_run)), h("td", {}, timeCell(g.previous_run)),
        h("td", {}, SCHEDULE_TYPES[g.schedule_type] ?? g.schedule_type), h("td", {}, timeCell(g.expiration_date)),
        h("td", { class: "members" }, g.jobs.map((j) => j.name).join(" → ")),
        h("td", { class: "actions" }, CAN_OPERATE ? [
          h("a", { href: `#/groups/${g.id}/edit`, class: "button edit", "aria-label": `Edit ${g.name}` }, "Edit"),
          h("button", { type: "button", class: "run-now", "aria-label": `Run ${g.name} now`, disabled: runningGroups.has(g.id), onclick: () => act(async () => { const r = await api("POST", `/groups/${g.id}/run`); say(`Group run ${r.group_run_id} requested.`); }, "Group run requested.") }, "Run now"),
          runningGroups.has(g.id) && h("button", { type: "button", class: "stop danger", "aria-label": `Stop ${g.name}`, onclick: async () => {
            if (!await ask({ title: `Stop ${g.name}?`, message: "The current job stops and no further job of the group runs.", ok: "Stop", danger: true })) return;
            await act(() => api("POST", `/groups/${g.id}/stop?confirm=true`), `Stopping ${g.name}…`);
          } }, "Stop"),
          h("button", { type: "button", "aria-label": `${g.state === "active" ? "Deactivate" : "Activate"} ${g.name}`, onclick: () => act(() => api("POST", `/groups/${g.id}/${g.state === "active" ? "deactivate" : "activate"}`), "Saved.") }, g.state === "active" ? "Deactivate" : "Activate"),
          h("button", { type: "button", class: "delete danger", "aria-label": `Delete ${g.name}`, onclick: async () => {
            if (!await ask({ title: `Delete ${g.name}?`, message: "Its jobs stay.", ok: "Delete", danger: true })) return;
            await act(() => api("DELETE", `/groups/${g.id}?confirm=true`), `${g.name} deleted.`);
          } }, "Delete"),
        ] : ""),
      )) : h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No groups.")))));
    runsBox.replaceChildren(groupRunsTable(groupRuns));
  }
  async function load(force = false) {
    const [page, runs] = await Promise.all([api("GET", "/groups?limit=500&sort=-id"), api("GET", "/group-runs?limit=20").catch(() => ({ items: [] }))]);
    const snapshot = JSON.stringify([page, runs]);
    if (!force && snapshot === last) return;
    last = snapshot;
    groups = page.items; groupRuns = runs.items;
    render();
  }
  await load(true);
  every(() => (groupRuns.some((r) => !r.ended) ? 1000 : 5000), () => load(false));
}

function groupRunsTable(groupRuns) {
  return h("table", { class: "grid group-runs-table", "aria-label": "Group runs" },
    h("thead", {}, h("tr", {}, ["Group ID.Run ID", "Group", "Start time", "Duration", "Run status", "Member runs"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, groupRuns.length ? groupRuns.map((r) => h("tr", { dataset: { groupRunId: r.group_run_id } },
      h("td", {}, h("a", { href: `#/group-runs/${r.group_run_id}` }, r.group_run_id)), h("td", {}, r.group_name ?? ""),
      h("td", {}, timeCell(r.start_time)), h("td", { class: "num" }, fmtDuration(r.duration_seconds)),
      h("td", {}, r.ended ? runStatus({ ...r, counts: {} }) : h("span", { class: "badge running" }, r.run_status)),
      h("td", {}, r.member_run_ids.map((id, i) => [i ? " → " : "", h("a", { href: `#/runs/${id}` }, id)])),
    )) : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No group runs yet."))));
}

async function groupRunDetail(groupRunId) {
  const box = h("div");
  view.replaceChildren(h("p", {}, h("a", { href: "#/groups" }, "← Groups")), h("h2", {}, `Group run ${groupRunId}`), box);
  let done = false;
  view.append(notificationsPanel(`/group-runs/${groupRunId}`, () => done));
  async function load() {
    const run = await api("GET", `/group-runs/${groupRunId}`);
    done = run.ended;
    box.replaceChildren(
      h("section", { class: "panel" }, h("dl", { class: "summary" },
        h("dt", {}, "Group"), h("dd", {}, run.group_name ?? run.group_id), h("dt", {}, "Run status"),
        h("dd", { id: "group-run-status" }, done ? runStatus({ ...run, counts: {} }) : h("span", { class: "badge running" }, "Running")),
        h("dt", {}, "Start time"), h("dd", {}, timeCell(run.start_time)), h("dt", {}, "Duration"), h("dd", {}, fmtDuration(run.duration_seconds)),
        h("dt", {}, "Jobs in order"), h("dd", {}, run.job_ids.join(" → ")), h("dt", {}, "Error"), h("dd", {}, run.error ?? ""))),
      h("h3", {}, "Member runs"), runsTable(run.members));
  }
  await load();
  every(1000, async () => { if (!done) await load(); });
}

// --- forms: schedule, inline errors --------------------------------------------------------------

let fieldIds = 0;
function field(label, control, { wide = false, check = false, name = null } = {}) {
  const id = control.id || `f${++fieldIds}`;
  control.id = id;
  if (name) control.dataset.field = name;
  const labelEl = h("label", { for: id }, label);
  return h("div", { class: `field${wide ? " wide" : ""}${check ? " check" : ""}` }, check ? [control, labelEl] : [labelEl, control]);
}
const textInput = (value = "", attrs = {}) => h("input", { type: "text", value: value ?? "", ...attrs });
const numberInput = (value, attrs = {}) => h("input", { type: "number", value: value ?? "", ...attrs });
const checkbox = (checked) => h("input", { type: "checkbox", checked: !!checked });
const selectInput = (options, value) => {
  const el = h("select", {}, options.map(([v, label]) => h("option", { value: v }, label)));
  if (value !== undefined && value !== null) el.value = value;
  return el;
};
const toLocalInput = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
};
const fromLocalInput = (value) => (value ? new Date(value).toISOString() : null);
// The input shows minutes only: an instant left as it was is sent back exactly, so an edit of a job
// whose one-time instant has passed is not refused as "in the past".
const readInstant = (input, original) =>
  original && input.value === toLocalInput(original) ? original : fromLocalInput(input.value);

function clearErrors(form) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-error.inline")) el.remove();
  form.querySelector(".form-error").textContent = "";
}

// The API's 422 names the field (`spec.source.path`) and prefixes its message with it; next to the
// field the path is noise, so the field's own label is said instead.
function inWords(error) {
  const prefix = `${error.field}: `;
  const text = (error.field && error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message).replace(/^Value error, /, "");
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}
const controlLabel = (control) => (control.labels?.[0] ?? control.querySelector?.(":scope > legend"))?.textContent.trim() ?? "";

// Every problem the API listed is said next to its field (the nearest control the form has for its
// path) and in the summary, one line each; the first invalid field gets the focus.
function showError(form, error) {
  const summary = form.querySelector(".form-error");
  const problems = error.errors.length ? error.errors : [error];
  const marked = problems.map((problem, index) => markField(form, problem, index));
  summary.textContent = marked.map((m) => m.text).join("\n");
  (marked.find((m) => m.control)?.control ?? summary).focus();
}

function markField(form, problem, index) {
  let path = problem.field, control = null;
  while (path && !(control = form.querySelector(`[data-field="${CSS.escape(path)}"]`))) {
    const cut = Math.max(path.lastIndexOf("."), path.lastIndexOf("["));
    path = cut > 0 ? path.slice(0, cut) : "";
  }
  if (!control) return { text: problem.message, control: null };
  const words = inWords(problem), label = controlLabel(control);
  const message = h("p", { class: "field-error inline", id: `${control.id}-error${index ? `-${index}` : ""}`, dataset: { errorFor: problem.field } }, words);
  const earlier = control.getAttribute("aria-invalid") ? control.getAttribute("aria-describedby") : null;
  control.setAttribute("aria-invalid", "true");
  control.setAttribute("aria-describedby", earlier ? `${earlier} ${message.id}` : message.id);
  control.closest(".field, fieldset, .mapping-row")?.append(message);
  return { text: label ? `${label}: ${words}` : words, control };
}

function scheduleFieldset(schedule = { type: "on_demand" }) {
  const rule = schedule.rule ?? {};
  const type = selectInput([["on_demand", "On-demand"], ["one_time", "One-time"], ["recurring", "Recurring"], ["on_event", "On event (trigger)"]], schedule.type);
  const at = h("input", { type: "datetime-local", value: toLocalInput(schedule.at) });
  const kind = selectInput([["every", "Every N minutes"], ["daily", "Daily"], ["weekly", "Weekly"], ["monthly", "Monthly"], ["cron", "Cron expression"]], rule.kind ?? "daily");
  const minutes = numberInput(rule.minutes ?? 60, { min: 1 });
  const time = h("input", { type: "time", value: (rule.at ?? "02:00").slice(0, 5) });
  const dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const days = dayNames.map((d) => h("input", { type: "checkbox", value: d, id: `day-${d}`, checked: (rule.days ?? ["mon"]).includes(d) }));
  const monthDay = numberInput(rule.day ?? 1, { min: 1, max: 31 });
  const cron = textInput(rule.expression ?? "0 2 * * *");
  const zone = textInput(schedule.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC");
  const spread = numberInput(schedule.spread_minutes ?? 0, { min: 0, max: 59, title: "0–59: start at a stable offset inside this window after each slot, so jobs of one slot don't all start at once" });
  const trigger = textInput(schedule.trigger ?? "");
  const parts = {
    one_time: h("div", { class: "row" }, field(inZone("Run at"), at, { name: "schedule.at" })),
    recurring: h("div", { class: "row" },
      field("Repeat", kind, { name: "schedule.rule" }),
      h("div", { class: "row", dataset: { rule: "every" } }, field("Minutes", minutes, { name: "schedule.rule.minutes" })),
      h("div", { class: "row", dataset: { rule: "weekly" } }, h("fieldset", { class: "days", "data-field": "schedule.rule.days" }, h("legend", {}, "Days"), dayNames.map((d, i) => h("label", {}, days[i], ` ${d}`)))),
      h("div", { class: "row", dataset: { rule: "monthly" } }, field("Day of month", monthDay, { name: "schedule.rule.day" })),
      h("div", { class: "row", dataset: { rule: "daily weekly monthly" } }, field("At", time, { name: "schedule.rule.at" })),
      h("div", { class: "row", dataset: { rule: "cron" } }, field("Cron expression", cron, { name: "schedule.rule.expression" })),
      field("Time zone", zone, { name: "schedule.timezone" }),
      field("Spread (minutes)", spread, { name: "schedule.spread_minutes" })),
    on_event: h("div", { class: "row" }, field("Trigger name", trigger, { name: "schedule.trigger" })),
  };
  const update = () => {
    for (const [key, part] of Object.entries(parts)) part.hidden = type.value !== key;
    for (const el of parts.recurring.querySelectorAll("[data-rule]")) el.hidden = !el.dataset.rule.split(" ").includes(kind.value);
  };
  type.addEventListener("change", update);
  kind.addEventListener("change", update);
  update();
  const element = h("fieldset", { "data-field": "schedule" }, h("legend", {}, "Schedule"), field("Schedule type", type, { name: "schedule.type" }), Object.values(parts));
  const read = () => {
    if (type.value === "on_demand") return { type: "on_demand" };
    if (type.value === "one_time") return { type: "one_time", at: readInstant(at, schedule.at) };
    if (type.value === "on_event") return { type: "on_event", trigger: trigger.value.trim() };
    const r = { kind: kind.value };
    if (kind.value === "every") r.minutes = Number(minutes.value);
    if (kind.value === "cron") r.expression = cron.value.trim();
    if (["daily", "weekly", "monthly"].includes(kind.value)) r.at = time.value;
    if (kind.value === "weekly") r.days = days.filter((d) => d.checked).map((d) => d.value);
    if (kind.value === "monthly") r.day = Number(monthDay.value);
    const spreadMinutes = Number(spread.value) || 0;
    return { type: "recurring", rule: r, timezone: zone.value.trim() || "UTC", ...(spreadMinutes ? { spread_minutes: spreadMinutes } : {}) };
  };
  return { element, read };
}

// --- job form (create import / export, edit) ------------------------------------------------------

const MATCH_COLUMNS = ["RIID_", "EMAIL_ADDRESS_", "CUSTOMER_ID_", "MOBILE_NUMBER_"];

async function jobForm(jobId, newType = "import") {
  const [job, connections, tables] = await Promise.all([
    jobId ? api("GET", `/jobs/${jobId}`) : null,
    api("GET", "/connections?limit=500"),
    api("GET", "/tables?limit=500"),
  ]);
  const kind = job ? job.spec.kind : newType;
  const spec = job ? structuredClone(job.spec) : {};
  const connOptions = (k) => [["", "Choose a connection…"], ...connections.items.filter((c) => !k || c.kind === k).map((c) => [String(c.id), `${c.name} (${c.kind === "sftp" ? `${c.host}:${c.port}` : c.base_url})`])];
  const tableList = h("datalist", { id: "table-names" }, tables.items.map((t) => h("option", { value: t.name }, `${t.name} (${t.kind})`)));

  const name = textInput(job?.name ?? "", { maxlength: 100, autocomplete: "off" });
  const active = checkbox(job ? job.state === "active" : true);
  const expires = h("input", { type: "datetime-local", value: toLocalInput(job?.expiration_date) });
  const maxDuration = textInput(spec.max_duration ?? "", { placeholder: "e.g. PT2H (none: no limit)", size: 12 });
  const schedule = scheduleFieldset(job?.schedule);
  const fmt = spec.format ?? {};
  const delimiter = textInput(fmt.delimiter ?? ",", { maxlength: 1, size: 2 });
  const header = checkbox(fmt.header ?? true);
  const encoding = textInput(fmt.encoding ?? "utf-8", { size: 8 });
  const formatSet = h("fieldset", { "data-field": "spec.format" }, h("legend", {}, "File format (CSV)"), h("div", { class: "row" },
    field("Delimiter", delimiter, { name: "spec.format.delimiter" }), field("Encoding", encoding, { name: "spec.format.encoding" }),
    field("First line is a header", header, { check: true, name: "spec.format.header" })));

  let sections, readSpec;
  if (kind === "import") {
    const src = spec.source ?? {};
    const srcKind = selectInput([["sftp", "File on an SFTP server"], ["adobe_analytics", "Adobe Analytics data feed (partner feed)"]], src.kind ?? "sftp");
    const connection = selectInput(connOptions("sftp"), src.connection_id ? String(src.connection_id) : "");
    const path = textInput(src.path ?? src.manifest_path ?? "", { placeholder: "incoming/contacts_*.csv" });
    const pick = selectInput([["newest", "Newest match"], ["all", "All matches, in name order"]], src.pick ?? "newest");
    const ready = selectInput([["none", "Ignore"], ["required", "Required"], ["wait", "Wait for it"]], src.ready_file ?? "none");
    const compression = selectInput([["auto", "Detect"], ["none", "None"], ["gzip", "gzip"], ["zip", "zip"]], src.compression ?? "auto");
    const countFile = checkbox(src.count_file);
    const sftpOnly = h("div", { class: "row" }, field("With a pattern, pick", pick, { name: "spec.source.pick" }), field("Ready file (.ready)", ready, { name: "spec.source.ready_file" }),
      field("Compression", compression, { name: "spec.source.compression" }), field("Check a .count file", countFile, { check: true, name: "spec.source.count_file" }));
    const pathLabel = h("div", {});
    const updateSource = () => {
      sftpOnly.hidden = srcKind.value !== "sftp";
      pathLabel.replaceChildren(field(srcKind.value === "sftp" ? "File path or pattern" : "Manifest path or pattern", path, { wide: true, name: srcKind.value === "sftp" ? "spec.source.path" : "spec.source.manifest_path" }));
    };
    srcKind.addEventListener("change", updateSource);
    updateSource();

    const mappingBox = h("div", { id: "mapping" });
    const addMapping = (m = {}) => {
      const i = mappingBox.children.length;
      const column = textInput(m.column ?? "", { "aria-label": `Column ${i + 1}`, placeholder: "column" });
      const target = textInput(m.field ?? "", { "aria-label": `Field ${i + 1}`, placeholder: "field" });
      const rowEl = h("div", { class: "mapping-row" }, field("File column", column, { name: `spec.mapping[${i}].column` }), h("span", {}, "→"),
        field("Table field", target, { name: `spec.mapping[${i}].field` }),
        h("button", { type: "button", "aria-label": `Remove mapping ${i + 1}`, onclick: () => { rowEl.remove(); renumber(); } }, "Remove"));
      rowEl._value = () => ({ ...(m.date_format ? { date_format: m.date_format } : {}), column: column.value.trim(), field: target.value.trim() });
      mappingBox.append(rowEl);
    };
    const renumber = () => [...mappingBox.children].forEach((rowEl, i) => {
      const [c, f] = rowEl.querySelectorAll("input");
      c.dataset.field = `spec.mapping[${i}].column`; f.dataset.field = `spec.mapping[${i}].field`;
    });
    (spec.mapping?.length ? spec.mapping : [{}]).forEach(addMapping);

    const tgt = spec.target ?? {};
    const tgtKind = selectInput([["custom", "Custom table"], ["list", "List"], ["profile_extension", "Profile extension table"]], tgt.kind ?? "custom");
    const table = textInput(tgt.table ?? "", { list: "table-names", autocomplete: "off" });
    const mode = selectInput([["merge", "Merge"], ["append", "Append"], ["overwrite", "Overwrite the whole table"]], tgt.mode ?? "merge");
    const matchCols = MATCH_COLUMNS.map((c) => h("input", { type: "checkbox", value: c, checked: (tgt.match_columns ?? ["EMAIL_ADDRESS_"]).includes(c) }));
    const matchCol = selectInput(MATCH_COLUMNS.map((c) => [c, c]), tgt.match_column ?? "EMAIL_ADDRESS_");
    const maxReject = numberInput(spec.guards?.max_reject_percent ?? "", { min: 0, max: 100, step: "any" });
    const customOnly = field("Mode", mode, { name: "spec.target.mode" });
    const listOnly = h("fieldset", { "data-field": "spec.target.match_columns" }, h("legend", {}, "Match on"), h("div", { class: "days" }, MATCH_COLUMNS.map((c, i) => h("label", {}, matchCols[i], ` ${c}`))));
    const extOnly = field("Match column", matchCol, { name: "spec.target.match_column" });
    const updateTarget = () => { customOnly.hidden = tgtKind.value !== "custom"; listOnly.hidden = tgtKind.value !== "list"; extOnly.hidden = tgtKind.value !== "profile_extension"; };
    tgtKind.addEventListener("change", updateTarget);
    updateTarget();

    sections = [
      h("fieldset", { "data-field": "spec.source" }, h("legend", {}, "Source"), h("div", { class: "row" }, field("Source", srcKind, { name: "spec.source.kind" }), field("Connection", connection, { name: "spec.source.connection_id" }), pathLabel), sftpOnly),
      formatSet,
      h("fieldset", { "data-field": "spec.mapping" }, h("legend", {}, "Mapping"), mappingBox, h("button", { type: "button", id: "add-mapping", onclick: () => addMapping() }, "Add a column")),
      h("fieldset", { "data-field": "spec.target" }, h("legend", {}, "Target"), h("div", { class: "row" }, field("Target", tgtKind, { name: "spec.target.kind" }), field("Table", table, { name: "spec.target.table" }), customOnly, extOnly), listOnly,
        h("div", { class: "row" }, field("Fail when more than this % of records are rejected", maxReject, { name: "spec.guards.max_reject_percent" }))),
    ];
    readSpec = () => {
      const source = srcKind.value === "sftp"
        ? { ...(src.kind === "sftp" ? src : {}), kind: "sftp", connection_id: Number(connection.value) || 0, path: path.value.trim(), pick: pick.value, ready_file: ready.value, compression: compression.value, count_file: countFile.checked }
        : { kind: "adobe_analytics", connection_id: Number(connection.value) || 0, manifest_path: path.value.trim() };
      const target = { kind: tgtKind.value, table: table.value.trim() };
      if (tgtKind.value === "custom") target.mode = mode.value;
      if (tgtKind.value === "list") Object.assign(target, { ...(tgt.kind === "list" ? tgt : {}), kind: "list", table: table.value.trim(), match_columns: matchCols.filter((c) => c.checked).map((c) => c.value) });
      if (tgtKind.value === "profile_extension") target.match_column = matchCol.value;
      const guards = { ...(spec.guards ?? {}) };
      guards.max_reject_percent = maxReject.value === "" ? null : Number(maxReject.value);
      return {
        ...spec, kind: "import", source,
        format: { ...(spec.format ?? {}), delimiter: delimiter.value, header: header.checked, encoding: encoding.value.trim() },
        mapping: [...mappingBox.children].map((rowEl) => rowEl._value()), target, guards,
      };
    };
  } else {
    const src = spec.source ?? {};
    const dst = spec.destination ?? {};
    const srcKind = selectInput([["list", "List (audience)"], ["table", "Profile extension or custom table"]], src.kind ?? "list");
    const table = textInput(src.table ?? "", { list: "table-names", autocomplete: "off" });
    const incremental = checkbox(src.incremental);
    const fields = textInput((spec.fields ?? []).join(", "), { placeholder: "empty: all fields" });
    const dstKind = selectInput([["sftp", "File on an SFTP server"], ["rest", "Another system's REST API"]], dst.kind ?? "sftp");
    const connection = selectInput(connOptions(""), dst.connection_id ? String(dst.connection_id) : "");
    const template = textInput(dst.path_template ?? "out/export_{date}_{run_id}.csv");
    const gzip = checkbox(dst.gzip), readyFile = checkbox(dst.ready_file);
    const listName = textInput(dst.list_name ?? "");
    const matchCol = selectInput(MATCH_COLUMNS.map((c) => [c, c]), dst.match_column ?? "EMAIL_ADDRESS_");
    const sftpPart = h("div", { class: "row" }, field("Path template", template, { wide: true, name: "spec.destination.path_template" }), field("gzip", gzip, { check: true, name: "spec.destination.gzip" }), field("Write a .ready file", readyFile, { check: true, name: "spec.destination.ready_file" }));
    const restPart = h("div", { class: "row" }, field("List name", listName, { name: "spec.destination.list_name" }), field("Match column", matchCol, { name: "spec.destination.match_column" }));
    const updateDst = () => { sftpPart.hidden = dstKind.value !== "sftp"; restPart.hidden = dstKind.value !== "rest"; };
    dstKind.addEventListener("change", updateDst);
    updateDst();
    sections = [
      h("fieldset", { "data-field": "spec.source" }, h("legend", {}, "Source"), h("div", { class: "row" }, field("Export from", srcKind, { name: "spec.source.kind" }), field("Table", table, { name: "spec.source.table" }), field("Only records changed since the last run", incremental, { check: true, name: "spec.source.incremental" })),
        h("div", { class: "row" }, field("Fields, in order (comma-separated)", fields, { wide: true, name: "spec.fields" }))),
      formatSet,
      h("fieldset", { "data-field": "spec.destination" }, h("legend", {}, "Destination"), h("div", { class: "row" }, field("Destination", dstKind, { name: "spec.destination.kind" }), field("Connection", connection, { name: "spec.destination.connection_id" })), sftpPart, restPart),
    ];
    readSpec = () => {
      const source = { ...(src.kind === srcKind.value ? src : {}), kind: srcKind.value, table: table.value.trim(), incremental: incremental.checked };
      const destination = dstKind.value === "sftp"
        ? { kind: "sftp", connection_id: Number(connection.value) || 0, path_template: template.value.trim(), gzip: gzip.checked, ready_file: readyFile.checked }
        : { ...(dst.kind === "rest" ? dst : {}), kind: "rest", connection_id: Number(connection.value) || 0, list_name: listName.value.trim(), match_column: matchCol.value };
      return {
        ...spec, kind: "export", source, destination,
        fields: fields.value.split(",").map((f) => f.trim()).filter(Boolean),
        format: { ...(spec.format ?? {}), delimiter: delimiter.value, header: header.checked, encoding: encoding.value.trim() },
      };
    };
  }

  const preview = h("pre", { class: "spec", id: "spec-preview", "aria-live": "off" });
  const body = () => {
    const b = { name: name.value.trim(), spec: { ...readSpec(), max_duration: maxDuration.value.trim() || null }, schedule: schedule.read(), expires_at: readInstant(expires, job?.expiration_date) };
    if (job) b.version = job.version; else b.active = active.checked;
    return b;
  };
  const refreshPreview = () => { try { preview.textContent = JSON.stringify(body(), null, 2); } catch (_) { /* incomplete form */ } };
  const form = h("form", { class: "editor", novalidate: true, id: "job-form", "aria-labelledby": "form-title" },
    h("p", { class: "form-error", role: "alert", tabindex: -1 }),
    h("fieldset", {}, h("legend", {}, "Job"), h("div", { class: "row" }, field("Name", name, { wide: true, name: "name" }),
      job ? "" : field("Active", active, { check: true, name: "active" }), field(inZone("Expiration date"), expires, { name: "expires_at" }),
      field("Run timeout (ISO 8601, up to PT24H)", maxDuration, { name: "spec.max_duration" }))),
    sections, schedule.element,
    h("details", {}, h("summary", {}, "Specification (JSON sent to the API)"), preview),
    h("div", { class: "form-buttons" }, h("button", { type: "submit", class: "primary" }, job ? "Save" : `Create ${kind} job`), h("a", { href: job ? `#/jobs/${job.id}` : "#/jobs" }, "Cancel")),
    tableList,
  );
  form.addEventListener("input", refreshPreview);
  form.addEventListener("change", refreshPreview);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      const saved = job ? await api("PUT", `/jobs/${job.id}`, body()) : await api("POST", "/jobs", body());
      say(job ? `Saved ${saved.name}.` : `Created job ${saved.id}: ${saved.name}.`, "ok", { next: true });
      location.hash = `#/jobs/${saved.id}`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showError(form, error);
    }
  });
  view.replaceChildren(h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), h("h2", { id: "form-title" }, job ? `Edit job ${job.id}: ${job.name}` : `New ${kind} job`), form);
  refreshPreview();
  name.focus();
}

// --- group form: members in order, reordered with Up / Down ---------------------------------------

async function groupForm(groupId) {
  const [group, jobsPage] = await Promise.all([groupId ? api("GET", `/groups/${groupId}`) : null, api("GET", "/jobs?limit=500&sort=name")]);
  const jobsById = new Map(jobsPage.items.map((j) => [j.id, j]));
  let members = group ? group.jobs.map((j) => ({ id: j.id, name: j.name })) : [];
  const name = textInput(group?.name ?? "", { maxlength: 100, autocomplete: "off" });
  const expires = h("input", { type: "datetime-local", value: toLocalInput(group?.expiration_date) });
  const cont = checkbox(group?.continue_on_failure);
  const schedule = scheduleFieldset(group?.schedule);
  const list = h("ol", { class: "members", id: "group-members", "data-field": "job_ids", tabindex: -1, "aria-label": "Jobs of the group, in run order" });
  const adder = h("select", { id: "add-job" });
  const renderMembers = () => {
    list.replaceChildren(...members.map((m, i) => h("li", { dataset: { jobId: m.id } },
      h("span", { class: "pos" }, `${i + 1}.`), h("span", { class: "name" }, `${m.name} (job ${m.id})`),
      h("button", { type: "button", "aria-label": `Move ${m.name} up`, disabled: i === 0, onclick: () => { [members[i - 1], members[i]] = [members[i], members[i - 1]]; renderMembers(); list.querySelectorAll("li")[i - 1]?.querySelector("button")?.focus(); } }, "↑ Up"),
      h("button", { type: "button", "aria-label": `Move ${m.name} down`, disabled: i === members.length - 1, onclick: () => { [members[i + 1], members[i]] = [members[i], members[i + 1]]; renderMembers(); list.querySelectorAll("li")[i + 1]?.querySelectorAll("button")[1]?.focus(); } }, "↓ Down"),
      h("button", { type: "button", "aria-label": `Remove ${m.name}`, onclick: () => { members.splice(i, 1); renderMembers(); } }, "Remove"))));
    if (!members.length) list.append(h("li", { class: "muted" }, "No jobs yet: add them below, in the order they should run."));
    const free = jobsPage.items.filter((j) => !members.some((m) => m.id === j.id) && (!j.group_id || j.group_id === groupId));
    adder.replaceChildren(h("option", { value: "" }, "Choose a job…"), ...free.map((j) => h("option", { value: j.id }, `${j.name} (job ${j.id})`)));
  };
  renderMembers();
  const form = h("form", { class: "editor", novalidate: true, id: "group-form" },
    h("p", { class: "form-error", role: "alert", tabindex: -1 }),
    h("fieldset", {}, h("legend", {}, "Group"), h("div", { class: "row" }, field("Name", name, { wide: true, name: "name" }), field(inZone("Expiration date"), expires, { name: "expires_at" }),
      field("Continue with the next job when one fails", cont, { check: true, name: "continue_on_failure" }))),
    h("fieldset", {}, h("legend", {}, "Jobs, in run order"), list,
      h("div", { class: "member-row" }, field("Add a job", adder), h("button", { type: "button", id: "add-member", onclick: () => {
        const job = jobsById.get(Number(adder.value));
        if (job) { members.push({ id: job.id, name: job.name }); renderMembers(); }
      } }, "Add"))),
    schedule.element,
    h("div", { class: "form-buttons" }, h("button", { type: "submit", class: "primary" }, group ? "Save" : "Create group"), h("a", { href: "#/groups" }, "Cancel")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { name: name.value.trim(), job_ids: members.map((m) => m.id), schedule: schedule.read(), expires_at: readInstant(expires, group?.expiration_date), continue_on_failure: cont.checked };
    try {
      if (group) await api("PUT", `/groups/${group.id}`, { ...body, version: group.version });
      else await api("POST", "/groups", body);
      say(group ? `Saved ${body.name}.` : `Created group ${body.name}.`, "ok", { next: true });
      location.hash = "#/groups";
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      showError(form, error);
    }
  });
  view.replaceChildren(h("p", {}, h("a", { href: "#/groups" }, "← Groups")), h("h2", {}, group ? `Edit group ${group.id}: ${group.name}` : "New group"), form);
  name.focus();
}

route();
