"""Prometheus scrape config, alert rules (with promtool unit tests) and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_helpers import DEPLOY, REPO, find_tool, load_yaml, render_overlay, run, run_ok

PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "connect-dashboard.json"
SCRAPE_TARGETS = {"catalog": 8000, "scheduler": 8001, "executor": 8002, "logsink": 8003, "rabbitmq": 15692}


@pytest.fixture(scope="module")
def rules() -> dict[str, dict[str, Any]]:
    data = load_yaml(PROM / "alerts.yml")
    return {r["alert"]: r for group in data["groups"] for r in group["rules"] if "alert" in r}


def test_promtool_check_config() -> None:
    run_ok([find_tool("promtool"), "check", "config", "prometheus.yml"], cwd=PROM)


def test_promtool_check_rules() -> None:
    run_ok([find_tool("promtool"), "check", "rules", "alerts.yml"], cwd=PROM)


def test_promtool_alert_unit_tests() -> None:
    run_ok([find_tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=PROM)


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m]) > \n"
    )
    assert run([find_tool("promtool"), "check", "rules", str(bad)]).returncode != 0


def test_every_alert_has_a_unit_test(rules: dict[str, dict[str, Any]]) -> None:
    tests = load_yaml(PROM / "alerts.test.yml")
    tested = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(rules) <= tested, f"alerts without a firing unit test: {set(rules) - tested}"


def test_required_alerts(rules: dict[str, dict[str, Any]]) -> None:
    exprs = {name: " ".join(r["expr"].split()) for name, r in rules.items()}
    joined = "\n".join(exprs.values())
    assert re.search(r'increase\(connect_runs_total\{status="failed"\}\[\w+\]\)', joined), (
        "runs failing alert"
    )
    assert re.search(r"histogram_quantile\(0\.99,.*connect_scheduler_fire_lag_seconds_bucket", joined), (
        "scheduler lag p99"
    )
    assert re.search(r'rabbitmq_queue_messages\{queue=~"\.\*connect\[\.\]dead-letters"\}\).*> 0', joined), (
        "DLQ not empty"
    )
    assert re.search(
        r"sum by \(service, reason\) \(increase\(connect_dead_letters_total\[\w+\]\)\) > 0", joined
    ), "dead letters counted by the services"
    assert re.search(r'rabbitmq_queue_consumers\{queue=~"\.\*executor\[\.\]runs"\}\) == 0', joined), (
        "no executor consuming"
    )
    for name, rule in rules.items():
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), f"{name}: severity label"
        assert rule.get("annotations", {}).get("summary"), f"{name}: summary annotation"


def test_scrape_config_covers_every_service() -> None:
    config = load_yaml(PROM / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    found: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for host in sd["names"]:
                found[host] = sd["port"]
        for sc in job.get("static_configs", []):
            for target in sc["targets"]:
                host, _, port = target.rpartition(":")
                found[host] = int(port)
        if any(t.startswith("rabbitmq:") for sc in job.get("static_configs", []) for t in sc["targets"]):
            assert job.get("metrics_path") == "/metrics/per-object", (
                "per-queue metrics need /metrics/per-object"
            )
    for host, port in SCRAPE_TARGETS.items():
        assert found.get(host) == port, f"{host}:{port} is not scraped (found {found.get(host)})"


# ---------------------------------------------------------------------------- Grafana


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if t.get("expr")]


def test_dashboard_panels_cover_the_key_metrics(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    joined = "\n".join(_exprs(dashboard))
    for metric in (
        "connect_runs_total",
        "connect_run_duration_seconds_bucket",
        "connect_records_processed_total",
        "connect_scheduler_fire_lag_seconds_bucket",
        "rabbitmq_queue_messages_ready",
        "connect_runs_in_progress",
    ):
        assert metric in joined, f"no panel shows {metric}"
    assert re.search(r"sum by \(status\) \(increase\(connect_runs_total", joined), "runs by status"
    assert re.search(r"rate\(connect_records_processed_total", joined), "records processed rate"
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]


def test_dashboard_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    # promtool parses every query when they are wrapped as recording rules
    exprs = [re.sub(r"\$__(rate_)?interval", "5m", e) for e in _exprs(dashboard)]
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_ok([find_tool("promtool"), "check", "rules", str(path)])


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_dashboard_datasource_is_a_variable_defaulting_to_the_provisioned_one(
    dashboard: dict[str, Any],
) -> None:
    provisioned = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    uids = {d["uid"] for d in provisioned if d["type"] == "prometheus"}
    assert provisioned[0]["url"] == "http://prometheus:9090"
    variable = _variables(dashboard)["datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert variable["current"]["value"] in uids, "compose opens on the provisioned Prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_filters_connect_series_by_namespace(dashboard: dict[str, Any]) -> None:
    variable = _variables(dashboard)["namespace"]
    assert variable["type"] == "query" and variable["datasource"]["uid"] == "${datasource}"
    assert "label_values(" in variable["query"]["query"] and "namespace" in variable["query"]["query"]
    assert variable["includeAll"] and variable["allValue"] == ".*", "All also matches compose (no label)"
    for expr in _exprs(dashboard):
        for selector in re.findall(r"\bconnect_[a-z_]+(\{[^}]*\})?", expr):
            assert 'namespace=~"$namespace"' in selector, f"{expr}: Connect series need the namespace filter"
        for queue in re.findall(r'queue=~?"([^"]*)"', expr):
            assert queue.startswith(".*"), f"{expr}: queue names carry CONNECT_AMQP_PREFIX"


def test_dashboard_provider_path_matches_compose_mount() -> None:
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "connect.yml")["providers"][0]
    compose = load_yaml(REPO / "docker-compose.yml")
    mounts = [str(m) for m in compose["services"]["grafana"]["volumes"]]
    target = next(m.split(":")[1] for m in mounts if "connect-dashboard.json" in m)
    assert Path(target).parent == Path(provider["options"]["path"])


# ---------------------------------------------------------------------------- PrometheusRule and runbook

RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_BASE = "https://connect.example.com/docs/runbook.md"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_its_runbook_section(rules: dict[str, dict[str, Any]]) -> None:
    text = RUNBOOK.read_text()
    sections = {m[1]: m[2] for m in re.finditer(r"^## (\w+)\n(.*?)(?=^## |\Z)", text, re.M | re.S)}
    for name, rule in rules.items():
        url = rule["annotations"].get("runbook_url", "")
        assert url == f"{RUNBOOK_BASE}#{_slug(name)}", f"{name}: runbook_url {url!r}"
        assert name in sections, f"docs/runbook.md has no section '## {name}'"
        for part in ("What it means", "What to check", "How to fix"):
            assert f"**{part}.**" in sections[name], f"runbook {name}: {part}"
    assert set(sections) <= set(rules), f"runbook sections without an alert: {set(sections) - set(rules)}"


def test_queue_matchers_follow_the_amqp_prefix(rules: dict[str, dict[str, Any]]) -> None:
    for name, rule in rules.items():
        for matcher in re.findall(r'queue(=~?)"([^"]*)"', rule["expr"]):
            assert matcher[0] == "=~" and matcher[1].startswith(".*"), f"{name}: queue matcher {matcher}"


def test_prometheusrule_is_generated_from_the_alert_file() -> None:
    sys.path.insert(0, str(PROM))
    try:
        import to_prometheusrule
    finally:
        sys.path.remove(str(PROM))
    committed = (DEPLOY / "k8s" / "base" / "prometheusrule.yaml").read_text()
    assert committed == to_prometheusrule.render(), "run `make prometheusrule` after editing alerts.yml"
    for overlay in ("dev", "prod"):
        (rule,) = [o for o in render_overlay(overlay) if o["kind"] == "PrometheusRule"]
        assert rule["spec"]["groups"] == load_yaml(PROM / "alerts.yml")["groups"], overlay
