"""The chart as rendered: helm lint, the shape site operators rely on (probes, strategies,
restricted security contexts, resources), every setting reachable from values, secrets only
by reference, and values.schema.json refusing bad values before anything is installed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from datatx_operator import api
from datatx_operator.jobs import build_job
from datatx_operator.models import DataTransferSpec
from datatx_operator.settings import OperatorSettings, SmtpSettings, WebhookSettings
from devstack.kube import CHART, REPO
from grpc_bridge.settings import BridgeSettings
from localcluster.tools import tool_path

# Bridge settings a pod never needs: it runs in-cluster and nobody reads an addresses file.
NOT_FOR_PODS = {"DATATX_BRIDGE_KUBECONFIG", "DATATX_BRIDGE_ADDRESSES_FILE"}
EVERYTHING_ON = {
    "operator.smtp.host": "smtp.example.org",
    "operator.smtp.username": "datatx",
    "operator.smtp.passwordSecret.name": "smtp",
    "operator.webhook.url": "https://hooks.example.org/datatx",
    "operator.webhook.signingKeySecret.name": "webhook",
    "bridge.auth.staticTokensSecret.name": "tokens",
    "bridge.auth.jwtSecret.name": "reva",
    "bridge.tls.secretName": "bridge-tls",
    "bridge.tls.clientCaSecret.name": "clients-ca",
    "mover.localVolume.persistentVolumeClaim.claimName": "site-data",
    "networkPolicy.enabled": "true",
    "serviceMonitor.enabled": "true",
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool_path("helm")), *args], capture_output=True, text=True, check=check, timeout=60
    )


def render(values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    sets = [f"--set={key}={value}" for key, value in (values or {}).items()]
    out = helm("template", "datatx", str(CHART), "--namespace", "site", *sets).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_names(deployment: dict[str, Any]) -> set[str]:
    return {entry["name"] for entry in container(deployment)["env"]}


def test_helm_lint_is_clean() -> None:
    result = helm("lint", str(CHART), "--strict", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def test_operator_is_one_replica_replaced_whole_with_probes() -> None:
    operator = one(render(), "Deployment", "datatx-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    spec = container(operator)
    assert spec["command"] == ["datatx-operator"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert spec[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == "datatx-operator"


def test_bridge_replicas_service_and_probes() -> None:
    docs = render({"bridge.replicas": "3"})
    bridge = one(docs, "Deployment", "datatx-bridge")
    assert bridge["spec"]["replicas"] == 3
    spec = container(bridge)
    assert spec["readinessProbe"]["grpc"] == {"port": 50051}  # SERVING once the cache synced
    assert spec["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    service = one(docs, "Service", "datatx-bridge")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": 50051,
        "http": 8080,
        "metrics": 9091,
    }
    assert service["spec"]["selector"] == bridge["spec"]["selector"]["matchLabels"]
    assert one(docs, "PodDisruptionBudget", "datatx-bridge")["spec"]["minAvailable"] == 1
    # With TLS the kubelet's plain-text gRPC probe cannot work: readiness is a TCP connect.
    tls = container(one(render({"bridge.tls.secretName": "t"}), "Deployment", "datatx-bridge"))
    assert tls["readinessProbe"]["tcpSocket"] == {"port": "grpc"}


def test_every_pod_meets_the_restricted_pod_security_standard() -> None:
    docs = render(EVERYTHING_ON)
    templates = [d["spec"]["template"] for d in docs if d["kind"] == "Deployment"]
    settings = OperatorSettings(mover_image="ghcr.io/datatx/datatx:0.1.0")
    spec = DataTransferSpec.model_validate(
        {
            "source": "a:/x",
            "destination": "b:/y",
            "remotes": [{"name": "a", "type": "local"}, {"name": "b", "type": "local"}],
            "requester": {"user": "alice"},
            "credentialsRef": {"remotes": "t-remotes", "credential": "t-credential"},
        }
    )
    mover = build_job({"metadata": {"name": "t", "uid": "u"}}, spec, settings)["spec"]["template"]
    for template in [*templates, mover]:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        assert not pod.get("hostNetwork")
        assert not pod.get("hostPID")
        assert {kind for volume in pod["volumes"] for kind in volume} <= {
            "name",
            "emptyDir",
            "secret",
        }
        for spec_of in pod["containers"]:
            context = spec_of["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True
            seccomp = context.get("seccompProfile") or pod["securityContext"]["seccompProfile"]
            assert seccomp == {"type": "RuntimeDefault"}
            assert spec_of["resources"]["requests"]["memory"]
            assert spec_of["resources"]["limits"]["memory"]


def test_every_setting_of_operator_and_bridge_is_reachable_from_values() -> None:
    docs = render(EVERYTHING_ON)
    operator = env_names(one(docs, "Deployment", "datatx-operator"))
    bridge = env_names(one(docs, "Deployment", "datatx-bridge"))
    for model in (OperatorSettings, SmtpSettings, WebhookSettings):
        prefix = str(model.model_config.get("env_prefix"))
        expected = {f"{prefix}{name}".upper() for name in model.model_fields}
        assert expected <= operator, expected - operator
    expected = {f"DATATX_BRIDGE_{name}".upper() for name in BridgeSettings.model_fields}
    assert expected - NOT_FOR_PODS <= bridge, expected - NOT_FOR_PODS - bridge
    # ...and nothing stale: pydantic-settings ignores variables that name no setting.
    assert bridge <= expected, bridge - expected
    known = {
        f"{m.model_config.get('env_prefix')}{n}".upper()
        for m in (OperatorSettings, SmtpSettings, WebhookSettings)
        for n in m.model_fields
    }
    assert operator - {"USER", "HOME"} <= known, operator - known


def test_secrets_are_mounted_files_by_reference_never_environment() -> None:
    docs = render(EVERYTHING_ON)
    assert not [d for d in docs if d["kind"] == "Secret"]
    for name in ("datatx-operator", "datatx-bridge"):
        deployment = one(docs, "Deployment", name)
        spec = container(deployment)
        assert all("value" in entry for entry in spec["env"]), "no valueFrom: secrets are files"
        mounts = {m["name"]: m for m in spec["volumeMounts"]}
        secrets = {
            v["name"]: v["secret"]
            for v in deployment["spec"]["template"]["spec"]["volumes"]
            if "secret" in v
        }
        assert secrets
        for volume, secret in secrets.items():
            assert mounts[volume]["readOnly"] is True
            assert secret["defaultMode"] == 0o440
        files = {e["value"] for e in spec["env"] if e["name"].endswith("_FILE")}
        assert all(any(f.startswith(mounts[v]["mountPath"]) for v in secrets) for f in files)
    bridge = {
        e["name"]: e["value"] for e in container(one(docs, "Deployment", "datatx-bridge"))["env"]
    }
    assert bridge["DATATX_BRIDGE_STATIC_TOKENS_FILE"] == "/etc/datatx/static-tokens/tokens.yaml"


def test_invite_links_default_to_the_bridge() -> None:
    docs = render()
    operator = {
        e["name"]: e["value"] for e in container(one(docs, "Deployment", "datatx-operator"))["env"]
    }
    assert operator["DATATX_INVITE_BASE_URL"] == "http://datatx-bridge.site.svc:8080"
    assert operator["DATATX_NAMESPACES"] == '["site"]'
    assert operator["DATATX_MOVER_SERVICE_ACCOUNT"] == "datatx-mover"
    assert (
        operator["DATATX_MOVER_IMAGE"]
        == container(one(docs, "Deployment", "datatx-operator"))["image"]
    )
    public = render({"bridge.publicBaseUrl": "https://datatx.example.org"})
    env = {
        e["name"]: e["value"]
        for e in container(one(public, "Deployment", "datatx-operator"))["env"]
    }
    assert env["DATATX_INVITE_BASE_URL"] == "https://datatx.example.org"


def test_optional_network_policy_and_service_monitor() -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"NetworkPolicy", "ServiceMonitor"}
    docs = render(EVERYTHING_ON)
    movers = one(docs, "NetworkPolicy", "datatx-mover")["spec"]
    assert movers["policyTypes"] == ["Ingress"]
    assert "ingress" not in movers  # no ingress at all
    # ...and it selects the operator's Job pods.
    labels = {api.LABEL_MANAGED_BY: api.MANAGED_BY, api.LABEL_TRANSFER: "t"}
    for expression in movers["podSelector"]["matchExpressions"]:
        assert expression["key"] in labels
        assert (
            expression["operator"] == "Exists" or labels[expression["key"]] in expression["values"]
        )
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"datatx-operator", "datatx-bridge"}
    one(docs, "Service", "datatx-operator-metrics")


def test_rbac_only_chart_for_tests_without_workloads() -> None:
    docs = render({"operator.enabled": "false", "bridge.enabled": "false"})
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding"}


@pytest.mark.parametrize(
    ("setting", "value", "complaint"),
    [
        ("transfers.cacheMaxSeconds", "0", "cacheMaxSeconds"),
        ("transfers.inviteMaxWaitSeconds", "99999999", "inviteMaxWaitSeconds"),
        ("transfers.maxRunningTotal", "many", "maxRunningTotal"),
        ("bridge.replicas", "0", "replicas"),
        ("operator.healthPort", "70000", "healthPort"),
        ("bridge.logLevel", "LOUD", "logLevel"),
        ("bridge.publicBaseUrl", "ftp://x", "publicBaseUrl"),
        ("operator.smtp.passwordSecret.name", "Not_A_Name", "name"),
        ("bridge.tsl.secretName", "typo", "tsl"),
        ("podSecurityContext.runAsNonRoot", "false", "runAsNonRoot"),
        ("containerSecurityContext.allowPrivilegeEscalation", "true", "allowPrivilegeEscalation"),
        ("mover.memoryLimit", "lots", "memoryLimit"),
    ],
)
def test_schema_refuses_bad_values_and_names_them(setting: str, value: str, complaint: str) -> None:
    result = helm("template", "datatx", str(CHART), f"--set={setting}={value}", check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


def test_image_runs_as_the_user_the_chart_and_the_mover_jobs_use() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 65532:65532$", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}", dockerfile, re.MULTILINE)
    assert re.search(r"python:3\.11[\w.-]*@sha256:[0-9a-f]{64}", dockerfile), (
        "base pinned by digest"
    )
    uv_version = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert uv_version
    assert f"uv=={uv_version.group(1)}" in dockerfile
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 65532


def test_dockerfile_is_clean_for_hadolint() -> None:
    hadolint = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
