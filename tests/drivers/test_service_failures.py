"""FTS3, Rucio and FileSender failing in a Job on the local cluster: the mover's Job runs
again as `spec.retries` allows, then the transfer is Failed with the driver's reason and a
message that names the cause and holds no secret."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from datatx_operator.drivers.base import Reason
from tests.drivers import test_filesender, test_fts, test_rucio
from tests.drivers.drive import assert_no_secret_on_cluster, remote_secrets, submit
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.filesender import FileSenderServer
from tests.servers.fts3 import FtsServer
from tests.servers.rucio import RucioServer
from tests.servers.storage import StorageServer


@dataclass(frozen=True)
class Broken:
    """A transfer bound to fail, and what its failure must say."""

    spec: dict[str, Any]
    credential: str
    reason: Reason
    cause: str
    secrets: list[str]  # every secret the run held, the wrong credential included
    remote_secrets: dict[str, str] = field(default_factory=dict)


def fts_down(request: pytest.FixtureRequest) -> Broken:
    """FTS3 at a closed port: every request fails to connect."""
    fts: FtsServer = request.getfixturevalue("fts3_server")
    source = test_fts.write_source(request.getfixturevalue("webdav_server"))
    port: int = request.getfixturevalue("unused_port")
    return Broken(
        test_fts.cluster_spec(source, f"http://127.0.0.1:{port}", requestRetries=1),
        credential=fts.token,
        reason=Reason.NETWORK_ERROR,
        cause="FTS3 at 127.0.0.1 could not be reached after 2 attempts (ConnectError)",
        secrets=[fts.token, *source.secrets],
        remote_secrets=remote_secrets(source),
    )


def rucio_wrong_password(request: pytest.FixtureRequest) -> Broken:
    """A Rucio password that Rucio's userpass authentication refuses."""
    rucio: RucioServer = request.getfixturevalue("rucio_server")
    wrong = f"not-the-password-{uuid.uuid4().hex}"
    return Broken(
        test_rucio.cluster_spec(rucio, test_rucio.new_file(rucio)),
        credential=f"ddmlab:{wrong}",
        reason=Reason.AUTHENTICATION_FAILED,
        cause="refused the credentials for account root (CannotAuthenticate",
        secrets=[wrong, rucio.password],
    )


def filesender_wrong_secret(request: pytest.FixtureRequest) -> Broken:
    """A FileSender API secret other than the user's: every signature check fails."""
    server: FileSenderServer = request.getfixturevalue("filesender_server")
    webdav: StorageServer = test_filesender.write_share(request.getfixturevalue("webdav_server"))
    wrong = uuid.uuid4().hex
    return Broken(
        test_filesender.cluster_spec(server, webdav),
        credential=wrong,
        reason=Reason.AUTHENTICATION_FAILED,
        cause="auth_remote_signature_check_failed",
        secrets=[wrong, server.secret, *webdav.secrets],
        remote_secrets=remote_secrets(webdav),
    )


@pytest.mark.parametrize(
    "broken", [fts_down, rucio_wrong_password, filesender_wrong_secret], ids=lambda f: f.__name__
)
def test_a_failing_service_fails_the_transfer_after_the_retries(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    request: pytest.FixtureRequest,
    broken: Callable[[pytest.FixtureRequest], Broken],
) -> None:
    case = broken(request)
    run_operator(datatx_namespace)
    name = submit(
        datatx_namespace,
        {**case.spec, "retries": 1},
        credential=case.credential,
        remote_secrets=case.remote_secrets,
    )

    status = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=240)["status"]

    assert status["phase"] == "Failed", status
    assert status["reason"] == case.reason.value
    assert status["attempts"] == 2
    assert case.cause in status["message"]
    assert status["message"].endswith("(after 2 attempts)")
    assert_no_secret_on_cluster(datatx_namespace, name, case.secrets)
