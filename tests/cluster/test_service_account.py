"""A pod's projected service-account token authenticates; RBAC grants only its Role."""

from __future__ import annotations

import json

from localcluster.launcher import Cluster
from tests.cluster.helpers import apply, get, pod, wait_until

# Runs inside the pod, with only what the cluster gave it: in-cluster env and token volume.
CHECK = """
import json, os, ssl, urllib.error, urllib.request

account = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{account}/token").read()
namespace = open(f"{account}/namespace").read()
base = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
context = ssl.create_default_context(cafile=f"{account}/ca.crt")

def call(method, path, body=None):
    data = json.dumps(body).encode() if body else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)

review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
_, me = call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
maps, _ = call("GET", f"/api/v1/namespaces/{namespace}/configmaps")
secrets, denial = call("GET", f"/api/v1/namespaces/{namespace}/secrets")
print(json.dumps({
    "user": me["status"]["userInfo"]["username"],
    "namespace": namespace,
    "configmaps": maps,
    "secrets": secrets,
    "secrets_reason": denial.get("reason"),
}))
"""


def test_token_authenticates_as_the_service_account_and_rbac_limits_it(
    cluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    apply(
        cluster,
        ns,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmap-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "check"},
            "data": {"check.py": CHECK},
        },
        pod(
            "checker",
            [
                {
                    "name": "check",
                    "image": "python:3.11",
                    "args": ["/scripts/check.py"],
                    "volumeMounts": [{"name": "scripts", "mountPath": "/scripts"}],
                }
            ],
            serviceAccountName="reader",
            restartPolicy="Never",
            volumes=[{"name": "scripts", "configMap": {"name": "check"}}],
        ),
    )

    def finished() -> str | None:
        found = get(cluster, ns, "pod", "checker")
        phase = found["status"].get("phase") if found else None
        return phase if phase in ("Succeeded", "Failed") else None

    assert wait_until(finished, what="the checker pod to finish") == "Succeeded"
    result = json.loads(cluster.kubectl("logs", "-n", ns, "checker").stdout)
    assert result["user"] == f"system:serviceaccount:{ns}:reader"
    assert result["namespace"] == ns
    assert result["configmaps"] == 200, "the Role grants listing configmaps"
    assert result["secrets"] == 403, "the Role grants nothing on secrets"
    assert result["secrets_reason"] == "Forbidden"
