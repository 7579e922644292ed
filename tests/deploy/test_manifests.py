"""The deployment files in deploy/: every YAML parses, and the pieces refer to each other.

Checks structure, not a cluster: probes, resources, grace periods, selectors, names, commands.
"""

from __future__ import annotations

import functools
import inspect
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from podium.bus import redis as redis_bus
from podium.cli.app import app
from podium.cli.worker import worker_command

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
WORKER_LABELS = {"app.kubernetes.io/name": "podium", "app.kubernetes.io/component": "worker"}


@functools.cache
def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.rglob("*.yaml")) for doc in load(path)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc.get("kind") == kind]


def deployment(name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == name]
    return found


def container(dep: dict[str, Any]) -> dict[str, Any]:
    only: dict[str, Any]
    (only,) = dep["spec"]["template"]["spec"]["containers"]
    return only


def pod_labels(dep: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = dep["spec"]["template"]["metadata"]["labels"]
    return labels


def drain_s(args: list[str]) -> float:
    """The worker's drain: its --drain argument, else the command's default."""
    if "--drain" in args:
        return float(args[args.index("--drain") + 1])
    default: float = inspect.signature(worker_command).parameters["drain_s"].default
    return default


def test_every_yaml_file_in_deploy_parses_and_names_its_objects() -> None:
    paths = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(paths) >= 8
    for path in paths:
        docs = load(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            if path.parent.is_relative_to(K8S) and doc["kind"] != "Kustomization":
                assert doc["apiVersion"] and doc["metadata"]["name"], path
                if doc["kind"] != "Namespace":
                    assert doc["metadata"]["namespace"] == "podium", path


def test_the_kustomization_lists_existing_files_and_leaves_out_the_example_secret() -> None:
    (kustomization,) = load(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    assert all((K8S / name).is_file() for name in resources)
    assert "secret.example.yaml" not in resources  # a real Secret is created by hand
    assert not any(name.startswith("alternatives/") for name in resources)


# -- Deployments ---------------------------------------------------------------------------------


def test_each_deployment_has_probes_resources_and_a_matching_selector() -> None:
    deployments = of_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {"podium-serve", "podium-worker"}
    for dep in deployments:
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels(dep).items()
        box = container(dep)
        assert "livenessProbe" in box
        for bound in ("requests", "limits"):
            assert set(box["resources"][bound]) == {"cpu", "memory"}


def test_the_api_server_probes_healthz_and_readyz_on_its_port() -> None:
    dep = deployment("podium-serve")
    assert dep["spec"]["replicas"] == 2
    box = container(dep)
    assert box["args"][0] == "serve" and "0.0.0.0" in box["args"]
    (port,) = box["ports"]
    assert port["containerPort"] == 8080
    # The kubelet would send the pod's IP as Host, which the trusted-host check refuses.
    host = [{"name": "Host", "value": "localhost"}]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        expected = {"path": path, "port": port["name"], "httpHeaders": host}
        assert box[probe]["httpGet"] == expected


def test_the_api_server_accepts_the_host_names_of_its_service() -> None:
    args = container(deployment("podium-serve"))["args"]
    hosts = {args[i + 1] for i, arg in enumerate(args) if arg == "--allowed-host"}
    service = next(s for s in of_kind("Service") if s["metadata"]["name"] == "podium-serve")
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert {name, f"{name}.{namespace}.svc"} <= hosts


def test_clients_read_their_api_key_from_a_secret() -> None:
    (job,) = of_kind("CronJob")
    env = {e["name"]: e for e in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["PODIUM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "podium-api-key"
    assert "value" not in env["PODIUM_API_KEY"]


def test_the_worker_outlives_its_drain_and_is_probed_without_a_port() -> None:
    dep = deployment("podium-worker")
    assert dep["spec"]["replicas"] == 3
    box = container(dep)
    assert box["args"][:3] == ["worker", "--concurrency", "100"]
    grace_s = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_s == 45 and grace_s > drain_s(box["args"])
    assert "exec" in box["livenessProbe"]
    (port,) = box["ports"]  # its one port is for Prometheus, announced to it
    args = box["args"]
    assert port["name"] == "metrics"
    assert str(port["containerPort"]) == args[args.index("--metrics-port") + 1]
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])


def test_env_references_resolve_to_the_configmap_the_secret_and_earlier_variables() -> None:
    (config,) = of_kind("ConfigMap")
    secrets = {s["metadata"]["name"]: s for s in of_kind("Secret")}
    for dep in of_kind("Deployment"):
        defined: set[str] = set()
        for var in container(dep)["env"]:
            source = var.get("valueFrom", {})
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                assert ref["name"] == config["metadata"]["name"] and ref["key"] in config["data"]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert ref["key"] in secrets[ref["name"]]["stringData"]
            elif "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "status.podIP"
            else:
                used = set(re.findall(r"\$\((\w+)\)", var["value"]))
                assert used <= defined, f"{var['name']} uses {used - defined} before defining it"
            defined.add(var["name"])
        assert {"PODIUM_STORE", "PODIUM_BUS"} <= defined
        assert "POSTGRES_PASSWORD" not in config["data"]  # the password stays in the Secret


def test_the_service_selects_the_api_pods_and_targets_their_port() -> None:
    (service,) = of_kind("Service")
    serve = deployment("podium-serve")
    assert service["spec"]["selector"].items() <= pod_labels(serve).items()
    names = {p["name"] for p in container(serve)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


# -- scaling and disruption ----------------------------------------------------------------------


def test_the_autoscalers_target_the_worker_deployment() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    (scaled,) = of_kind("ScaledObject")
    for target in (hpa["spec"]["scaleTargetRef"], scaled["spec"]["scaleTargetRef"]):
        assert target["name"] == "podium-worker"
        assert target.get("kind", "Deployment") == "Deployment"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    # A metric podium exports (tests/observe/test_metrics_names.py checks the exposition).
    assert metric["external"]["metric"]["name"] == "podium_desired_workers"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    (prometheus,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert prometheus["metadata"]["query"] == "max(podium_desired_workers)"


def test_the_keda_scaler_watches_the_streams_and_group_the_redis_bus_uses() -> None:
    (scaled,) = of_kind("ScaledObject")
    triggers = [t for t in scaled["spec"]["triggers"] if t["type"] != "prometheus"]
    assert all(t["type"] == "redis-streams" for t in triggers)
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {redis_bus.GROUP}
    streams = [t["metadata"]["stream"] for t in triggers]
    assert streams[0] == "podium:dispatch:normal"
    assert set(streams) == {f"podium:dispatch:{p}" for p in redis_bus.PRIORITIES}


def test_disruption_budgets_select_the_pods_of_existing_deployments() -> None:
    budgets = {b["metadata"]["name"]: b for b in of_kind("PodDisruptionBudget")}
    assert budgets["podium-worker"]["spec"]["minAvailable"] == 2
    assert budgets["podium-worker"]["spec"]["selector"]["matchLabels"] == WORKER_LABELS
    assert set(budgets) == {"podium-worker", "podium-serve"}
    for budget in budgets.values():
        wanted = budget["spec"]["selector"]["matchLabels"].items()
        matching = [d for d in of_kind("Deployment") if wanted <= pod_labels(d).items()]
        assert len(matching) == 1
        assert budget["spec"]["minAvailable"] < matching[0]["spec"]["replicas"]


# -- Docker Compose and the image ------------------------------------------------------------------


def compose_services() -> dict[str, Any]:
    (document,) = load(COMPOSE)
    services: dict[str, Any] = document["services"]
    return services


def test_compose_services_have_an_image_or_a_build_that_exists() -> None:
    services = compose_services()
    assert set(services) == {"postgres", "redis", "serve", "worker"}
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    for name in ("serve", "worker"):
        build = services[name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert (context / build["dockerfile"]).is_file()
        assert (context / "pyproject.toml").is_file()


def test_compose_wires_the_store_and_bus_and_waits_for_healthy_dependencies() -> None:
    services = compose_services()
    for name in ("serve", "worker"):
        service = services[name]
        assert service["environment"] == {
            "PODIUM_STORE": "postgresql://podium:podium@postgres:5432/podium",
            "PODIUM_BUS": "redis://redis:6379/0",
        }
        for dependency, rule in service["depends_on"].items():
            assert rule == {"condition": "service_healthy"}
            assert "healthcheck" in services[dependency]
        assert "healthcheck" in service
    assert services["serve"]["ports"] == ["8080:8080"]
    assert services["worker"]["deploy"]["replicas"] == 3
    assert _seconds(services["worker"]["stop_grace_period"]) > drain_s(
        services["worker"]["command"]
    )


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "m" else 1)


def test_the_image_is_python_311_slim_with_podium_as_its_entrypoint() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["podium"]' in dockerfile
    assert re.search(r"^RUN pip install \.", dockerfile, re.MULTILINE)


def commands() -> list[list[str]]:
    """Every podium command line the deployment runs (the image's entrypoint is podium)."""
    services = compose_services()
    found = [services[name]["command"] for name in ("serve", "worker")]
    found += [container(dep)["args"] for dep in of_kind("Deployment")]
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd is not None
    found.append(yaml.safe_load(cmd.group(1)))
    return found


@pytest.mark.parametrize("args", commands(), ids=shlex.join)
def test_every_command_the_deployment_runs_is_a_valid_podium_command(args: list[str]) -> None:
    # --help after the options: click rejects an unknown option before it prints help.
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
