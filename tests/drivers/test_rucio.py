"""The Rucio driver against a real Rucio server (tests/servers/rucio.py: PyPI rucio on
SQLite, the mock transfertool, the conveyor daemons run once when a test says so)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pydantic
import pytest

from datatx_operator.drivers.base import DriverError, Outcome, Reason
from datatx_operator.drivers.rucio import RucioDriver
from datatx_operator.models import Progress
from tests.drivers.drive import assert_no_secret, assert_no_secret_on_cluster, context, submit
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.rucio import RucioServer


def rucio_driver(
    tmp_path: Path,
    rucio: RucioServer,
    did: str,
    rse_expression: str = "DST-RSE",
    *,
    credential: str | None = None,
    endpoint: str | None = None,
    **options: object,
) -> RucioDriver:
    options.setdefault("request_retries", 1)
    driver = RucioDriver(
        context(
            tmp_path,
            {"credential": credential or rucio.credential},
            source=f"cern:{did}",
            destination=f"cern:{rse_expression}",
            remotes=[{"name": "cern", "type": "rucio"}],
            driver="rucio",
            rucio={
                "endpoint": endpoint or rucio.url,
                "account": rucio.account,
                "pollIntervalSeconds": 1,
                **options,
            },
        )
    )
    driver.backoff_seconds = 0.05
    return driver


def cluster_spec(rucio: RucioServer, did: str, **options: object) -> dict[str, object]:
    """The spec of a Rucio transfer of `did` to DST-RSE, as the bridge submits it."""
    return {
        "source": f"cern:{did}",
        "destination": "cern:DST-RSE",
        "remotes": [{"name": "cern", "type": "rucio"}],
        "driver": "rucio",
        "rucio": {
            "endpoint": rucio.url,
            "account": rucio.account,
            "pollIntervalSeconds": 1,
            **options,
        },
    }


async def progress_until(driver: RucioDriver, done: Callable[[Progress], bool]) -> Progress:
    """The driver's progress once `done` holds (it polls the rule every second)."""
    async with asyncio.timeout(20):
        while not done(progress := await driver.progress()):  # noqa: ASYNC110 (no event)
            await asyncio.sleep(0.2)
    return progress


def new_file(rucio: RucioServer, size: int = 1000) -> str:
    return rucio.upload(f"file-{uuid.uuid4().hex[:12]}.dat", size)


async def started(driver: RucioDriver) -> asyncio.Task[Outcome]:
    await driver.start()
    return asyncio.create_task(driver.wait())


async def test_rule_goes_replicating_then_ok_and_the_transfer_finishes(
    tmp_path: Path, rucio_server: RucioServer
) -> None:
    did = new_file(rucio_server, size=4321)
    driver = rucio_driver(tmp_path, rucio_server, did)
    waiting = await started(driver)
    await asyncio.sleep(1.5)

    assert rucio_server.rule(str(driver.rule_id))["state"] == "REPLICATING"
    replicating = await driver.progress()
    assert (replicating.files, replicating.total_files, replicating.percent) == (0, 1, 0)
    assert not waiting.done()

    seconds = rucio_server.conveyor()
    outcome = await asyncio.wait_for(waiting, 30)

    assert outcome.succeeded, outcome.message
    assert outcome.result.remote_id == driver.rule_id
    assert (outcome.result.files, outcome.result.bytes) == (1, 4321)
    done = await driver.progress()
    assert (done.files, done.total_files, done.percent) == (1, 1, 100)
    rule = rucio_server.rule(str(driver.rule_id))
    assert rule["state"] == "OK"
    assert rule["comments"] == "datatx default/dt-test"
    logging.getLogger(__name__).info(
        "Rucio timings %s, conveyor pass %.1f s", rucio_server.timings, seconds
    )


async def test_unknown_did_is_not_found_with_a_clear_reason(
    tmp_path: Path, rucio_server: RucioServer
) -> None:
    driver = rucio_driver(tmp_path, rucio_server, "test:no-such-file.dat")

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.NOT_FOUND
    assert "source DID test:no-such-file.dat" in raised.value.message
    assert "DataIdentifierNotFound" in raised.value.message


@pytest.mark.parametrize(
    ("expression", "rucio_says"),
    [
        ("NO-SUCH-RSE", "RSE Expression resulted in an empty set"),
        ("DST-RSE&(", "Problem with parentheses"),
    ],
)
async def test_bad_rse_expression_is_an_invalid_request(
    tmp_path: Path, rucio_server: RucioServer, expression: str, rucio_says: str
) -> None:
    driver = rucio_driver(tmp_path, rucio_server, new_file(rucio_server), expression)

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.INVALID_REQUEST
    assert f"to '{expression}'" in raised.value.message
    assert f"InvalidRSEExpression: {rucio_says}" in raised.value.message


async def test_wrong_password_is_an_authentication_failure_without_the_password(
    tmp_path: Path, rucio_server: RucioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "ddmlab:not-the-password-" + uuid.uuid4().hex
    driver = rucio_driver(tmp_path, rucio_server, "test:whatever.dat", credential=wrong)

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.AUTHENTICATION_FAILED
    assert "CannotAuthenticate" in raised.value.message
    assert_no_secret(
        [wrong.split(":")[1], rucio_server.password], raised.value.message, caplog.text
    )


async def test_rejected_oidc_token_is_an_authentication_failure(
    tmp_path: Path, rucio_server: RucioServer
) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.e30.not-a-real-signature"
    driver = rucio_driver(
        tmp_path, rucio_server, "test:whatever.dat", credential=token, auth_type="oidc"
    )

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.AUTHENTICATION_FAILED
    assert "Rucio refused the oidc token of account root (CannotAuthenticate" in (
        raised.value.message
    )
    assert token not in raised.value.message


async def test_an_accepted_oidc_token_creates_the_rule(
    tmp_path: Path, rucio_server: RucioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = rucio_server.oidc_token()
    did = new_file(rucio_server)
    driver = rucio_driver(tmp_path, rucio_server, did, credential=token, auth_type="oidc")

    waiting = await started(driver)

    rule = rucio_server.rule(str(driver.rule_id))
    assert (rule["scope"], rule["name"]) == tuple(did.split(":"))
    assert (rule["account"], rule["rse_expression"]) == (rucio_server.account, "DST-RSE")
    assert await driver.cancel() is True, "the OIDC token also deletes the rule"
    assert (await asyncio.wait_for(waiting, 10)).reason is Reason.CANCELLED
    assert_no_secret([token], caplog.text)


async def test_dataset_progress_counts_the_rule_locks(
    tmp_path: Path, rucio_server: RucioServer
) -> None:
    did = rucio_server.dataset(f"dataset-{uuid.uuid4().hex[:12]}", files=3, size=1000)
    rucio_server.conveyor()  # earlier tests' queued transfers done: the next one is ours
    driver = rucio_driver(tmp_path, rucio_server, did)
    waiting = await started(driver)

    replicating = await progress_until(driver, lambda p: p.total_files > 0)
    assert (replicating.files, replicating.total_files, replicating.percent) == (0, 3, 0)

    rucio_server.conveyor(bulk=1)  # one file's transfer: one lock OK, the rule still waits
    part = await progress_until(driver, lambda p: p.files > 0)
    assert (part.files, part.total_files, part.percent) == (1, 3, 33)
    assert rucio_server.rule(str(driver.rule_id))["state"] == "REPLICATING"
    assert not waiting.done()

    rucio_server.conveyor()
    outcome = await asyncio.wait_for(waiting, 30)

    assert outcome.succeeded, outcome.message
    assert (outcome.result.files, outcome.result.bytes) == (3, 3000)
    done = await driver.progress()
    assert (done.files, done.total_files, done.percent) == (3, 3, 100)


async def test_cancel_deletes_the_rule_softly(tmp_path: Path, rucio_server: RucioServer) -> None:
    driver = rucio_driver(tmp_path, rucio_server, new_file(rucio_server))
    waiting = await started(driver)

    assert await driver.cancel() is True

    outcome = await asyncio.wait_for(waiting, 10)
    assert outcome.reason is Reason.CANCELLED
    rule = rucio_server.rule(str(driver.rule_id))  # soft delete: still there, expiring
    expires = dt.datetime.strptime(str(rule["expires_at"]), "%a, %d %b %Y %H:%M:%S %Z")
    assert expires.replace(tzinfo=dt.UTC) <= dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


@pytest.mark.parametrize("state", ["STUCK", "SUSPENDED"])
async def test_stuck_or_suspended_rule_is_a_remote_failure(
    tmp_path: Path, rucio_server: RucioServer, state: str
) -> None:
    driver = rucio_driver(tmp_path, rucio_server, new_file(rucio_server))
    waiting = await started(driver)

    rucio_server.set_rule_state(str(driver.rule_id), state)

    outcome = await asyncio.wait_for(waiting, 20)
    assert outcome.reason is Reason.REMOTE_FAILED
    assert f"Rucio rule {driver.rule_id} is {state}" in outcome.message


async def test_a_rerun_follows_the_rule_of_the_first_run(
    tmp_path: Path, rucio_server: RucioServer
) -> None:
    did = new_file(rucio_server)
    first = rucio_driver(tmp_path, rucio_server, did)
    await first.start()
    second = rucio_driver(tmp_path, rucio_server, did)

    await second.start()

    assert second.rule_id == first.rule_id
    await first.cancel()


async def test_rucio_down_is_a_network_error(
    tmp_path: Path, rucio_server: RucioServer, unused_port: int
) -> None:
    driver = rucio_driver(
        tmp_path, rucio_server, "test:x.dat", endpoint=f"http://127.0.0.1:{unused_port}"
    )

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.NETWORK_ERROR
    assert "Rucio at 127.0.0.1 could not be reached after 2 attempts" in raised.value.message


def test_rucio_source_must_be_a_did(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="remote:scope:name"):
        context(
            tmp_path,
            {},
            source="cern:just-a-name",
            destination="cern:DST-RSE",
            remotes=[{"name": "cern", "type": "rucio"}],
            driver="rucio",
            rucio={"endpoint": "https://rucio.example.org", "account": "alice"},
        )


def test_rucio_transfer_runs_in_a_job_on_the_cluster(
    datatx_namespace: Namespace, run_operator: OperatorFactory, rucio_server: RucioServer
) -> None:
    did = new_file(rucio_server, size=2048)
    run_operator(datatx_namespace)
    name = submit(
        datatx_namespace,
        cluster_spec(rucio_server, did),
        credential=rucio_server.credential,
        remote_secrets={},
    )

    def replicating() -> list[dict[str, object]]:
        return [r for r in rucio_server.rules(did) if r["rse_expression"] == "DST-RSE"]

    for _ in range(240):
        if replicating():
            break
        time.sleep(0.5)
    (rule,) = replicating()
    assert rule["state"] == "REPLICATING"
    datatx_namespace.wait_phase(name, "InProgress", timeout=60)
    rucio_server.conveyor()

    status = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=120)["status"]

    assert status["phase"] == "Finished", status
    assert status["result"]["remoteId"] == rule["id"]
    assert (status["result"]["files"], status["result"]["bytes"]) == (1, 2048)
    assert rucio_server.rule(str(rule["id"]))["state"] == "OK"
    assert_no_secret_on_cluster(datatx_namespace, name, [rucio_server.password])
