"""Pods as local processes: volumes, env, logs, exit status, restarts, signals and probes."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from localcluster.launcher import Cluster
from tests.cluster.helpers import (
    Manifest,
    apply,
    container_state,
    first_line,
    get,
    pid_gone,
    pod,
    python_container,
    wait_until,
)


def _finished(cluster: Cluster, namespace: str, name: str) -> Manifest:
    def check() -> Manifest | None:
        found = get(cluster, namespace, "pod", name)
        phase = found["status"].get("phase") if found else None
        return found if phase in ("Succeeded", "Failed") else None

    return wait_until(check, what=f"pod {name} to finish")


def test_volumes_and_env_are_visible_inside_the_pod_only(
    cluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    secret_dir = "/etc/localcluster-test/credentials"
    config_dir = "/opt/localcluster-test/config"
    cluster.kubectl("create", "secret", "generic", "creds", "-n", ns, "--from-literal=token=s3cr3t")
    cluster.kubectl("create", "configmap", "settings", "-n", ns, "--from-literal=mode=fast")
    script = f"""
import os
print("secret-file", open("{secret_dir}/token").read())
print("config-file", open("{config_dir}/mode").read())
open("/scratch/written", "w").write("x")
print("scratch", os.listdir("/scratch"))
print("env", os.environ["FROM_SECRET"], os.environ["FROM_CONFIG"], os.environ["POD"],
      os.environ["NS"], os.environ["GREETING"])
print("in-cluster", os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
"""
    container = python_container(
        "show",
        script,
        env=[
            {
                "name": "FROM_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
            },
            {
                "name": "FROM_CONFIG",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "GREETING", "value": "hi-$(POD)"},
        ],
        volumeMounts=[
            {"name": "creds", "mountPath": secret_dir},
            {"name": "settings", "mountPath": config_dir},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    )
    apply(
        cluster,
        ns,
        pod(
            "show",
            [container],
            restartPolicy="Never",
            volumes=[
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "settings", "configMap": {"name": "settings"}},
                {"name": "scratch", "emptyDir": {}},
            ],
        ),
    )
    assert _finished(cluster, ns, "show")["status"]["phase"] == "Succeeded"
    lines = cluster.kubectl("logs", "-n", ns, "show").stdout.splitlines()
    assert lines == [
        "secret-file s3cr3t",
        "config-file fast",
        "scratch ['written']",
        f"env s3cr3t fast show {ns} hi-show",
        f"in-cluster 127.0.0.1 {cluster.server.rsplit(':', 1)[1]}",
    ]
    for host_path in ("/etc/localcluster-test", "/opt/localcluster-test", "/scratch"):
        assert not Path(host_path).exists(), f"{host_path} must not appear on the host"


def test_exit_code_termination_message_and_logs(cluster: Cluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    script = """
import sys, time
for n in range(3):
    print(f"out-{n}")
    print(f"err-{n}", file=sys.stderr)
    time.sleep(0.5)
open("/dev/termination-log", "w").write("bad input: nothing to do")
sys.exit(2)
"""
    apply(cluster, ns, pod("talker", [python_container("talk", script)], restartPolicy="Never"))
    followed = cluster.kubectl("logs", "-f", "-n", ns, "talker", "--pod-running-timeout=60s")
    assert followed.stdout.split() == [f"{s}-{n}" for n in range(3) for s in ("out", "err")]

    finished = _finished(cluster, ns, "talker")
    assert finished["status"]["phase"] == "Failed"
    terminated = container_state(finished)["terminated"]
    assert terminated["exitCode"] == 2
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "bad input: nothing to do"
    tail = cluster.kubectl("logs", "-n", ns, "talker", "--tail=1").stdout
    assert tail == "err-2\n"
    stamped = cluster.kubectl("logs", "-n", ns, "talker", "--timestamps").stdout.splitlines()
    assert all(line.split(" ", 1)[0].endswith("Z") for line in stamped)


def test_deleted_pod_gets_sigterm_then_goes(
    cluster: Cluster, cluster_namespace: str, tmp_path: Path
) -> None:
    ns = cluster_namespace
    script = """
import os, pathlib, signal, sys, time
marks = pathlib.Path("/marks/log")
def stop(*_):
    marks.open("a").write("SIGTERM\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
marks.write_text(f"{os.getpid()}\\n")
while True:
    time.sleep(0.1)
"""
    container = python_container(
        "wait", script, volumeMounts=[{"name": "marks", "mountPath": "/marks"}]
    )
    volumes = [{"name": "marks", "hostPath": {"path": str(tmp_path)}}]
    apply(cluster, ns, pod("waiter", [container], volumes=volumes))
    log = tmp_path / "log"
    pid = int(wait_until(lambda: first_line(log), what="the pod start"))

    cluster.kubectl("delete", "pod", "-n", ns, "waiter", "--timeout=60s")

    assert log.read_text().splitlines() == [str(pid), "SIGTERM"]
    assert pid_gone(pid)


def test_sigkill_after_the_grace_period(
    cluster: Cluster, cluster_namespace: str, tmp_path: Path
) -> None:
    ns = cluster_namespace
    script = """
import os, pathlib, signal, time
marks = pathlib.Path("/marks/log")
signal.signal(signal.SIGTERM, lambda *_: marks.open("a").write("ignored SIGTERM\\n"))
marks.write_text(f"{os.getpid()}\\n")
while True:
    time.sleep(0.1)
"""
    container = python_container(
        "stubborn", script, volumeMounts=[{"name": "marks", "mountPath": "/marks"}]
    )
    volumes = [{"name": "marks", "hostPath": {"path": str(tmp_path)}}]
    apply(
        cluster,
        ns,
        pod("stubborn", [container], volumes=volumes, terminationGracePeriodSeconds=2),
    )
    log = tmp_path / "log"
    pid = int(wait_until(lambda: first_line(log), what="the pod start"))

    cluster.kubectl("delete", "pod", "-n", ns, "stubborn", "--timeout=60s")

    assert log.read_text().splitlines() == [str(pid), "ignored SIGTERM"]
    assert pid_gone(pid), "SIGKILL follows when the grace period is over"


def test_on_failure_restarts_the_container_in_the_same_pod(
    cluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    script = """
import pathlib, sys
mark = pathlib.Path("/scratch/tried")
if not mark.exists():
    mark.write_text("once")
    print("first run fails")
    sys.exit(1)
print("second run succeeds")
"""
    container = python_container(
        "retry", script, volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}]
    )
    apply(
        cluster,
        ns,
        pod(
            "retrier",
            [container],
            restartPolicy="OnFailure",
            volumes=[{"name": "scratch", "emptyDir": {}}],
        ),
    )
    finished = _finished(cluster, ns, "retrier")
    status = finished["status"]["containerStatuses"][0]
    assert finished["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert cluster.kubectl("logs", "-n", ns, "retrier").stdout == "second run succeeds\n"
    previous = cluster.kubectl("logs", "-n", ns, "retrier", "--previous").stdout
    assert previous == "first run fails\n"


def test_unmapped_image_waits_with_a_clear_reason(cluster: Cluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    container = {"name": "nope", "image": "registry.example.org/nothing/here:1.0"}
    apply(cluster, ns, pod("unmapped", [container]))

    def pull_error() -> Manifest | None:
        found = get(cluster, ns, "pod", "unmapped")
        waiting: Manifest = container_state(found).get("waiting", {}) if found else {}
        return waiting if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    reason = wait_until(pull_error, what="an image pull error")
    assert "registry.example.org/nothing/here:1.0" in reason["message"]
    assert "images.toml" in reason["message"]
    found = get(cluster, ns, "pod", "unmapped")
    assert found is not None
    assert found["status"]["phase"] == "Pending"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_deployment_becomes_available_through_its_readiness_probe(
    cluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    port = _free_port()
    serve = python_container(
        "web",
        f"import http.server as h; h.HTTPServer(('127.0.0.1', {port}), "
        "h.SimpleHTTPRequestHandler).serve_forever()",
        ports=[{"name": "http", "containerPort": port}],
        readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        livenessProbe={"tcpSocket": {"port": port}, "periodSeconds": 2},
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [serve]}},
        },
    }
    apply(cluster, ns, deployment)
    cluster.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=90s")
    web = get(cluster, ns, "deployment", "web")
    assert web is not None
    assert web["status"]["availableReplicas"] == 1
    cluster.kubectl("delete", "deployment", "-n", ns, "web", "--wait=true")


def test_ready_follows_the_readiness_probe(cluster: Cluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    port = _free_port()
    late = python_container(
        "late",
        f"import time, socket; time.sleep(4); s = socket.create_server(('127.0.0.1', {port}));"
        " time.sleep(600)",
        readinessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1},
    )
    apply(cluster, ns, pod("late", [late], terminationGracePeriodSeconds=1))

    def ready_condition() -> Manifest | None:
        found = get(cluster, ns, "pod", "late")
        conditions = {c["type"]: c for c in found["status"].get("conditions", [])} if found else {}
        condition = conditions.get("Ready")
        return condition if condition and condition["status"] == "True" else None

    started_at = wait_until(
        lambda: (
            (found := get(cluster, ns, "pod", "late"))
            and container_state(found).get("running", {}).get("startedAt")
        ),
        what="the container to run",
    )
    assert ready_condition() is None, "not Ready while nothing listens"
    became_ready = wait_until(ready_condition, what="Ready once the port is open")
    assert became_ready["lastTransitionTime"] > started_at


def test_failing_liveness_probe_restarts_the_container(
    cluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    doomed = python_container(
        "doomed",
        "import time; time.sleep(600)",
        livenessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2},
    )
    apply(cluster, ns, pod("doomed", [doomed], terminationGracePeriodSeconds=1))

    def restarted() -> Manifest | None:
        found = get(cluster, ns, "pod", "doomed")
        statuses = found["status"].get("containerStatuses") if found else None
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

    status = wait_until(restarted, timeout=90, what="a restart after failed liveness probes")
    assert status["lastState"]["terminated"]["exitCode"] == 128 + 15, "ended by SIGTERM"
    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector=reason=Unhealthy", "-o", "name"
    ).stdout
    assert events.strip(), "the failed probe is reported as an event"


def test_running_pod_reports_and_sees_the_documented_pod_ip(
    cluster: Cluster, cluster_namespace: str
) -> None:
    """Pods share the host's network, so the README promises 127.0.0.1 as pod and host IP;
    clients that dial status.podIP (or read it through the downward API) rely on it."""
    ns = cluster_namespace
    script = """
import os, time
print(os.environ["POD_IP"], os.environ["HOST_IP"], flush=True)
time.sleep(300)
"""
    env = [
        {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
        for name, path in (("POD_IP", "status.podIP"), ("HOST_IP", "status.hostIP"))
    ]
    apply(cluster, ns, pod("addressed", [python_container("show", script, env=env)]))

    def running() -> Manifest | None:
        found = get(cluster, ns, "pod", "addressed")
        return found if found and found["status"].get("phase") == "Running" else None

    status = wait_until(running, what="the pod to run")["status"]
    assert status["podIP"] == status["hostIP"] == "127.0.0.1"
    assert status["podIPs"] == status["hostIPs"] == [{"ip": "127.0.0.1"}]
    logs = wait_until(lambda: cluster.kubectl("logs", "-n", ns, "addressed").stdout, what="log")
    assert logs == "127.0.0.1 127.0.0.1\n"
    cluster.kubectl("delete", "pod", "-n", ns, "addressed", "--wait=false")


def test_a_volume_over_the_checkout_does_not_hide_the_software(
    cluster: Cluster, cluster_namespace: str
) -> None:
    """An emptyDir laid over the folder holding the checkout (as the chart's /tmp does when
    the checkout lives in /tmp) leaves the venv and the project importable, while the rest
    of that folder is the pod's own empty volume."""
    checkout = Path(sys.prefix).parent
    script = f"""
import os, datatx_operator
print("imported", datatx_operator.__name__)
print("siblings", sorted(set(os.listdir({str(checkout.parent)!r})) - {{{checkout.name!r}}}))
"""
    container = python_container(
        "reader", script, volumeMounts=[{"name": "scratch", "mountPath": str(checkout.parent)}]
    )
    manifest = pod("reader", [container], restartPolicy="Never", volumes=[
        {"name": "scratch", "emptyDir": {}}
    ])  # fmt: skip
    apply(cluster, cluster_namespace, manifest)

    finished = _finished(cluster, cluster_namespace, "reader")
    logs = cluster.kubectl("logs", "-n", cluster_namespace, "reader").stdout
    assert finished["status"]["phase"] == "Succeeded", logs
    assert logs.splitlines() == ["imported datatx_operator", "siblings []"]
