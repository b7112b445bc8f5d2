"""No secret used by a transfer shows up anywhere an operator or a user can look."""

from __future__ import annotations

from datatx_operator.models import Invitee
from tests.operator.submit import accept, submit
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.notify import Mailbox
from tests.servers.storage import StorageServer


def test_no_credential_in_resources_events_logs_metrics_or_pod_specs(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    smtp_server: Mailbox,
    wsgidav_server: StorageServer,
    sftp_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    wsgidav_server.write("src/a.txt", b"secret-free payload")
    operator = run_operator(
        datatx_namespace,
        DATATX_SMTP_HOST=smtp_server.host,
        DATATX_SMTP_PORT=str(smtp_server.port),
        DATATX_SMTP_STARTTLS="false",
    )
    direct = submit(datatx_namespace, wsgidav_server, "/src", sftp_server, "/a")
    invited = submit(
        datatx_namespace,
        wsgidav_server,
        "/src",
        s3_server,
        "/bucket/b",
        credential=False,
        invitee=Invitee(email="eve@dest.example"),
    )
    token = smtp_server.next().get_content().split("token=", 1)[1].split()[0]
    accept(datatx_namespace, invited, s3_server.credential)
    for name in (direct, invited):
        assert (
            datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=180)["status"]["phase"]
            == "Finished"
        )

    kubectl = datatx_namespace.cluster.kubectl
    ns = ["-n", datatx_namespace.name]
    places = {
        "transfers": kubectl("get", "datatransfers.datatx.io", *ns, "-o", "yaml").stdout,
        "events": kubectl("get", "events", *ns, "-o", "yaml").stdout,
        "jobs and pods": kubectl("get", "jobs,pods", *ns, "-o", "yaml").stdout,
        "mover logs": "".join(
            kubectl("logs", *ns, f"job/{name}-run0", check=False).stdout
            for name in (direct, invited)
        ),
        "operator log": operator.logs(),
        "metrics": operator.metrics(),
    }
    secrets = [*wsgidav_server.secrets, *sftp_server.secrets, *s3_server.secrets, token]
    for place, text in places.items():
        assert text, f"{place} is empty: nothing was checked"
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {place}"
