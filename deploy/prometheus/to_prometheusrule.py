"""Write deploy/k8s/base/prometheusrule.yaml from deploy/prometheus/alerts.yml (`make prometheusrule`).

One source of alert rules: the compose Prometheus loads alerts.yml, the Prometheus Operator the
PrometheusRule, and tests/deploy/test_deploy_monitoring.py asserts the committed file is this output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "alerts.yml"
TARGET = HERE.parent / "k8s" / "base" / "prometheusrule.yaml"
HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by `make prometheusrule`; edit that file, not this one.
# The Prometheus Operator loads these alerts; your Prometheus may select rules by a label
# (e.g. release: <name>): add it in your overlay.
"""


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line expressions, so the rules stay readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "connect", "labels": {"app.kubernetes.io/name": "connect"}},
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


if __name__ == "__main__":
    TARGET.write_text(render())
    sys.stdout.write(f"wrote {TARGET}\n")
