"""deploy/k8s: both overlays render, validate (core kinds and CRDs) and keep the operational invariants."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_helpers import (
    K8S,
    REPO,
    by_name,
    find_tool,
    load_yaml,
    of_kind,
    render_overlay,
    run,
    run_ok,
)

K8S_VERSION = "1.30.0"  # oldest Kubernetes minor these manifests target
SERVICES = {"catalog": 8000, "scheduler": 8001, "executor": 8002, "logsink": 8003}
SECRET_KEYS = {"AMQP_URL", "MONGO_URL", "CONNECT_SECRET_KEY"}
# Keys of the same Secret that most deployments leave out: previous keys while rotating, a passphrase's salt.
OPTIONAL_SECRET_KEYS = {"CONNECT_OLD_SECRET_KEYS", "CONNECT_SECRET_SALT"}
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): K8S / "schemas" / "keda.sh" / "scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): K8S
    / "schemas"
    / "keda.sh"
    / "triggerauthentication_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): K8S
    / "schemas"
    / "monitoring.coreos.com"
    / "servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): K8S
    / "schemas"
    / "monitoring.coreos.com"
    / "prometheusrule_v1.json",
}
DEFAULT_GRACEFUL_TIMEOUT = 30


def is_crd(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].split("/")[0].endswith((".sh", ".coreos.com"))


def deployments(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {d["metadata"]["name"].removeprefix("connect-"): d for d in of_kind(objs, "Deployment")}
    assert set(found) == set(SERVICES), f"expected one Deployment per service, got {sorted(found)}"
    return found


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any], objs: list[dict[str, Any]]) -> dict[str, Any]:
    """Effective environment: envFrom ConfigMaps, overridden by env entries (as the kubelet does)."""
    env: dict[str, Any] = {}
    configmaps = by_name(objs, "ConfigMap")
    for source in c.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in configmaps, f"envFrom references missing ConfigMap {ref}"
        env.update(configmaps[ref]["data"])
    for item in c.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        value = labels.get(expr["key"])
        ok = {
            "In": present and value in expr.get("values", []),
            "NotIn": not present or value not in expr.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[expr["operator"]]
        if not ok:
            return False
    return True


# ---------------------------------------------------------------------------- rendering and schemas


def test_kubectl_is_available() -> None:
    kubectl = find_tool("kubectl")
    proc = run_ok([kubectl, "version", "--client", "-o", "json"])
    assert "kustomizeVersion" in proc.stdout


def test_overlay_renders(objects: list[dict[str, Any]], overlay: str) -> None:
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    } <= kinds
    assert not of_kind(objects, "Secret"), (
        "no Secret may be committed; connect-secrets is created out of band"
    )
    namespaces = {o["metadata"].get("namespace") for o in objects}
    assert namespaces == {"connect" if overlay == "prod" else "connect-dev"}, namespaces


def test_core_objects_pass_kubernetes_validate_strict(objects: list[dict[str, Any]], tmp_path: Path) -> None:
    validator = find_tool("kubernetes-validate")
    files = []
    for i, obj in enumerate(o for o in objects if not is_crd(o)):
        path = tmp_path / f"{i:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj))
        files.append(str(path))
    assert len(files) >= 15
    proc = run_ok([validator, "--strict", "--no-warn", "-k", K8S_VERSION, *files])
    assert proc.stdout.count("passed") == len(files), proc.stdout


def test_kubernetes_validate_strict_rejects_unknown_fields(tmp_path: Path) -> None:
    deploy = next(o for o in render_overlay("prod") if o["kind"] == "Deployment")
    broken = json.loads(json.dumps(deploy))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    proc = run([find_tool("kubernetes-validate"), "--strict", "--no-warn", "-k", K8S_VERSION, str(path)])
    assert proc.returncode != 0, proc.stdout


def test_every_custom_resource_has_a_schema_and_validates(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    checker = find_tool("check-jsonschema")
    crds = [o for o in objects if is_crd(o)]
    assert crds
    for i, obj in enumerate(crds):
        key = (obj["apiVersion"], obj["kind"])
        assert key in CRD_SCHEMAS, f"no committed JSON schema for {key}"
        path = tmp_path / f"{i:02d}-{obj['kind']}.json"
        path.write_text(json.dumps(obj))
        run_ok([checker, "--schemafile", str(CRD_SCHEMAS[key]), str(path)])


def test_crd_schemas_are_valid_and_strict(tmp_path: Path) -> None:
    checker = find_tool("check-jsonschema")
    run_ok([checker, "--check-metaschema", *map(str, CRD_SCHEMAS.values())])
    scaled = next(o for o in render_overlay("prod") if o["kind"] == "ScaledObject")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicas"] = 5  # typo of maxReplicaCount
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    schema = CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]
    assert run([checker, "--schemafile", str(schema), str(path)]).returncode != 0
    for schema_path in CRD_SCHEMAS.values():
        assert "datreeio/CRDs-catalog" in json.loads(schema_path.read_text())["$comment"], (
            "record the schema source"
        )


# ---------------------------------------------------------------------------- pods


def test_probes(objects: list[dict[str, Any]]) -> None:
    for name, deploy in deployments(objects).items():
        c = container(deploy)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": SERVICES[name]}, f"{name}: container port"
        expected = {"livenessProbe": "/healthz", "startupProbe": "/healthz", "readinessProbe": "/readyz"}
        for probe, path in expected.items():
            assert probe in c, f"{name}: {probe} missing"
            get = c[probe]["httpGet"]
            assert get["path"] == path, f"{name}: {probe} must GET {path}"
            assert get["port"] in ("http", SERVICES[name]), f"{name}: {probe} port"
        startup = c["startupProbe"]
        assert startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10) >= 30, "startup budget"


def test_pod_security(objects: list[dict[str, Any]]) -> None:
    for name, deploy in deployments(objects).items():
        pod = deploy["spec"]["template"]["spec"]
        c = container(deploy)
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        assert psc.get("runAsNonRoot") or csc.get("runAsNonRoot"), f"{name}: runAsNonRoot"
        assert csc.get("runAsUser", psc.get("runAsUser", 1)) != 0, f"{name}: runs as root"
        assert csc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
        assert csc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
        assert csc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities drop ALL"
        assert not csc.get("capabilities", {}).get("add"), f"{name}: adds capabilities"
        seccomp = csc.get("seccompProfile") or psc.get("seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", f"{name}: seccomp RuntimeDefault"
        assert not csc.get("privileged"), f"{name}: privileged"
        assert pod.get("automountServiceAccountToken") is False, f"{name}: no API token needed"
        assert pod.get("enableServiceLinks") is False, f"{name}: service env vars would leak into settings"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp must be a writable emptyDir"


def test_resources_have_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    for name, deploy in deployments(objects).items():
        resources = container(deploy).get("resources", {})
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{name}: {section} cpu+memory"


def test_termination_grace_exceeds_graceful_timeout(objects: list[dict[str, Any]]) -> None:
    for name, deploy in deployments(objects).items():
        pod = deploy["spec"]["template"]["spec"]
        c = container(deploy)
        graceful = float(env_of(c, objects).get("CONNECT_GRACEFUL_TIMEOUT") or DEFAULT_GRACEFUL_TIMEOUT)
        pre_stop = c.get("lifecycle", {}).get("preStop", {})
        sleep = 0.0
        if "exec" in pre_stop and pre_stop["exec"]["command"][0] == "sleep":
            sleep = float(pre_stop["exec"]["command"][1])
        grace = pod.get("terminationGracePeriodSeconds", 30)
        assert grace > graceful + sleep, (
            f"{name}: terminationGracePeriodSeconds {grace} <= {graceful} + preStop {sleep}"
        )
    executor = deployments(objects)["executor"]
    assert float(env_of(container(executor), objects)["CONNECT_GRACEFUL_TIMEOUT"]) >= 60, (
        "runs need time to finish"
    )


def test_settings_and_secret_references(objects: list[dict[str, Any]]) -> None:
    for name, deploy in deployments(objects).items():
        c = container(deploy)
        assert c["args"] == ["serve", name], f"{name}: args"
        env = env_of(c, objects)
        assert env.get(f"{name.upper()}_HTTP_PORT") == str(SERVICES[name]), f"{name}: port env"
        assert {"CONNECT_DB_PREFIX", "LOG_LEVEL"} <= set(env), f"{name}: settings from the ConfigMap"
        # Each pod gets the secrets it uses: the scheduler stores and reads no connection secret.
        needed = SECRET_KEYS - {"CONNECT_SECRET_KEY"} if name == "scheduler" else SECRET_KEYS
        assert not (SECRET_KEYS - needed) & set(env), f"{name}: gets a secret it does not use"
        for key in needed:
            ref = env.get(key)
            assert isinstance(ref, dict) and ref.get("secretKeyRef") == {
                "name": "connect-secrets",
                "key": key,
            }, f"{name}: {key} must come from Secret connect-secrets"
        optional = set() if name == "scheduler" else OPTIONAL_SECRET_KEYS
        assert OPTIONAL_SECRET_KEYS & set(env) == optional, f"{name}: rotation and salt keys"
        for key in optional:
            assert env[key] == {"secretKeyRef": {"name": "connect-secrets", "key": key, "optional": True}}, (
                f"{name}: {key} must be an optional key of Secret connect-secrets"
            )
        for item in c.get("env", []):
            if "value" in item:
                assert not any(w in item["name"] for w in ("SECRET", "PASSWORD", "TOKEN", "URL")), item[
                    "name"
                ]


def test_topology_spread(objects: list[dict[str, Any]]) -> None:
    for name, deploy in deployments(objects).items():
        pod = deploy["spec"]["template"]
        constraints = pod["spec"].get("topologySpreadConstraints", [])
        keys = {c["topologyKey"] for c in constraints}
        assert "kubernetes.io/hostname" in keys, f"{name}: spread over nodes"
        for c in constraints:
            assert matches(c["labelSelector"], pod["metadata"]["labels"]), (
                f"{name}: spread selector misses its pods"
            )


def test_images_come_from_the_overlay(objects: list[dict[str, Any]], overlay: str) -> None:
    wanted = load_yaml(K8S / "overlays" / overlay / "kustomization.yaml")["images"][0]
    for name, deploy in deployments(objects).items():
        image = container(deploy)["image"]
        assert image == f"{wanted['newName']}:{wanted['newTag']}", (
            f"{name}: image {image} ignores the overlay"
        )
        assert not image.endswith(":latest"), f"{name}: pin a tag"


# ---------------------------------------------------------------------------- services, PDBs, monitoring


def test_services_expose_metrics_and_catalog_http(objects: list[dict[str, Any]]) -> None:
    services = by_name(objects, "Service")
    for name, deploy in deployments(objects).items():
        svc = services.get(f"connect-{name}")
        assert svc, f"{name}: no Service"
        assert matches(
            {"matchLabels": svc["spec"]["selector"]}, deploy["spec"]["template"]["metadata"]["labels"]
        )
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        assert "metrics" in ports, f"{name}: Service needs a port named metrics"
        assert ports["metrics"]["targetPort"] in ("http", SERVICES[name])
    assert "http" in {p["name"] for p in services["connect-catalog"]["spec"]["ports"]}, (
        "catalog HTTP API port"
    )


def test_pod_disruption_budgets(objects: list[dict[str, Any]]) -> None:
    pdbs = of_kind(objects, "PodDisruptionBudget")
    for name, deploy in deployments(objects).items():
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        covering = [p for p in pdbs if matches(p["spec"]["selector"], labels)]
        assert len(covering) == 1, f"{name}: exactly one PDB"
        assert covering[0]["spec"].get("maxUnavailable") == 1, f"{name}: maxUnavailable 1"


def test_service_monitor_scrapes_every_service(objects: list[dict[str, Any]]) -> None:
    monitors = of_kind(objects, "ServiceMonitor")
    assert len(monitors) == 1
    spec = monitors[0]["spec"]
    endpoint_ports = {e["port"] for e in spec["endpoints"]}
    assert {e.get("path", "/metrics") for e in spec["endpoints"]} == {"/metrics"}
    for svc in of_kind(objects, "Service"):
        assert matches(spec["selector"], svc["metadata"]["labels"]), (
            f"{svc['metadata']['name']} is not scraped"
        )
        assert endpoint_ports & {p["name"] for p in svc["spec"]["ports"]}


# Network policies: tests/deploy/test_deploy_network_policies.py evaluates them flow by flow.


# ---------------------------------------------------------------------------- per overlay


def test_prod_replicas_and_keda() -> None:
    objects = render_overlay("prod")
    deploys = deployments(objects)
    assert deploys["scheduler"]["spec"]["replicas"] == 2, "scheduler runs active-active with 2 replicas"
    assert deploys["catalog"]["spec"].get("replicas", 1) >= 2
    assert "replicas" not in deploys["executor"]["spec"], "KEDA owns the executor replica count"

    scaled = of_kind(objects, "ScaledObject")
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    assert spec["scaleTargetRef"]["name"] == deploys["executor"]["metadata"]["name"]
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] == 1
    assert spec["maxReplicaCount"] > spec["minReplicaCount"]
    assert not {"minReplicaCount", "maxReplicaCount"} - set(spec)


def _metric_names_exported() -> set[str]:
    return set(re.findall(r'"(connect_[a-z_]+)"', (REPO / "shared" / "metrics.py").read_text()))


def test_executors_scale_on_queued_plus_held_work() -> None:
    """The composite target is EXECUTOR_CONCURRENCY; its inputs follow the configured prefixes."""
    objects = render_overlay("prod")
    (scaled,) = of_kind(objects, "ScaledObject")
    spec, namespace = scaled["spec"], scaled["metadata"]["namespace"]
    executor = container(deployments(objects)["executor"])
    env = env_of(executor, objects)
    concurrency = env["EXECUTOR_CONCURRENCY"]
    assert int(concurrency) >= 1
    triggers = {t["name"]: t for t in spec["triggers"]}
    assert set(triggers) == {"queued", "running", "held"}

    modifiers = spec["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == "queued + max(running, held)"
    assert modifiers["target"] == concurrency, "one replica per EXECUTOR_CONCURRENCY runs of work"
    assert modifiers["metricType"] == "AverageValue", "desired = ceil(work / target)"

    queued = triggers["queued"]
    assert queued["type"] == "rabbitmq" and queued["metadata"]["mode"] == "QueueLength"
    assert queued["metadata"]["queueName"] == env.get("CONNECT_AMQP_PREFIX", "") + "executor.runs"
    assert queued["metadata"]["value"] == concurrency
    auth = by_name(objects, "TriggerAuthentication")[queued["authenticationRef"]["name"]]
    refs = {(r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert ("host", "connect-secrets", "AMQP_URL") in refs

    running = triggers["running"]
    assert running["type"] == "prometheus"
    query = running["metadata"]["query"]
    metric = re.match(r"sum\((\w+)\{", query)
    assert metric and metric[1] == "connect_runs_in_progress" in _metric_names_exported(), query
    assert f'namespace="{namespace}"' in query, "the query must follow the overlay's namespace"
    assert 'service="connect-executor"' in query and "or vector(0)" in query
    assert running["metadata"]["threshold"] == concurrency
    assert running["metadata"]["serverAddress"].startswith("http")

    held = triggers["held"]
    assert held["type"] == "mongodb"
    assert held["metadata"]["dbName"] == f"{env['CONNECT_DB_PREFIX']}_executor"
    assert held["metadata"]["collection"] == "run_leases"
    assert json.loads(held["metadata"]["query"]) == {"status": "running"}
    assert held["metadata"]["queryValue"] == concurrency
    auth = by_name(objects, "TriggerAuthentication")[held["authenticationRef"]["name"]]
    refs = {(r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert ("connectionString", "connect-secrets", "MONGO_URL") in refs


def test_scale_in_leaves_the_graceful_hand_over_time() -> None:
    objects = render_overlay("prod")
    executor = deployments(objects)["executor"]
    graceful = float(env_of(container(executor), objects)["CONNECT_GRACEFUL_TIMEOUT"])
    grace = executor["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= graceful + 15, "margin for the hand-over of unfinished runs and the event drain"
    (scaled,) = of_kind(objects, "ScaledObject")
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert behavior["stabilizationWindowSeconds"] >= graceful, "no scale-in on a short dip"
    assert behavior["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    assert "replicas" not in executor["spec"]


def test_max_replicas_is_set_by_the_overlay() -> None:
    prod = load_yaml(K8S / "overlays" / "prod" / "kustomization.yaml")
    patched = [
        op["value"]
        for patch in prod.get("patches", [])
        if patch.get("target", {}).get("kind") == "ScaledObject"
        for op in yaml.safe_load(patch["patch"])
        if op["path"] == "/spec/maxReplicaCount"
    ]
    assert patched, "prod overlay must set the executor ceiling"
    (scaled,) = of_kind(render_overlay("prod"), "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == patched[-1]


def test_dev_is_single_replica_without_keda() -> None:
    objects = render_overlay("dev")
    for name, deploy in deployments(objects).items():
        assert deploy["spec"].get("replicas", 1) == 1, f"dev {name}: one replica"
    assert not [o for o in objects if o["apiVersion"].startswith("keda.sh/")], "dev has no KEDA objects"


@pytest.mark.parametrize("overlay_name", ["dev", "prod"])
def test_config_map_is_generated_and_referenced(overlay_name: str) -> None:
    objects = render_overlay(overlay_name)
    (cm,) = of_kind(objects, "ConfigMap")
    assert cm["metadata"]["name"].startswith("connect-config-"), "hash suffix rolls pods when settings change"
    for deploy in deployments(objects).values():
        refs = [s["configMapRef"]["name"] for s in container(deploy).get("envFrom", [])]
        assert refs == [cm["metadata"]["name"]]
