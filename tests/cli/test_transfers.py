"""Users start, follow, list and stop transfers with `datatx`; scripts get JSON."""

from __future__ import annotations

import os
import time

from tests.cli.conftest import Cli, Result
from tests.servers.storage import StorageServer


def _no_secrets(cli: Cli, servers: list[StorageServer], *results: Result) -> None:
    secrets = [*cli.setup.tokens.values()] + [s for server in servers for s in server.secrets]
    for result in results:
        for secret in secrets:
            assert secret not in result.stdout + result.stderr


def _wait_status(
    cli: Cli, transfer_id: str, status: str, timeout: float = 120
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    data: dict[str, object] = {}
    while time.monotonic() < deadline:
        data = cli("-o", "json", "status", transfer_id).json()
        if data["status"] == status:
            return data
        time.sleep(0.5)
    raise AssertionError(f"{transfer_id} never reached {status}: {data}")


def test_submit_watch_status_and_list(
    cli: Cli, webdav_server: StorageServer, wsgidav_server: StorageServer
) -> None:
    sent = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(2_000_000)}
    for path, data in sent.items():
        webdav_server.write(f"data/{path}", data)
    remotes = cli.remotes_file(webdav_server, wsgidav_server)
    credential = cli.private("credential", wsgidav_server.credential)

    submitted = cli(
        "submit",
        "src:/data",
        "dst:/in",
        f"--remotes={remotes}",
        f"--credential-file={credential}",
        "--watch",
    )

    assert submitted.code == 0, submitted.stderr
    transfer_id = submitted.stdout.split()[0]
    assert f"{transfer_id} created" in submitted.stdout
    assert f"{transfer_id} FINISHED finished: 2 files" in submitted.stdout
    assert "100%" in submitted.stdout  # the progress bar's last state
    assert wsgidav_server.tree("in") == sent

    status = cli("status", transfer_id)
    assert status.code == 0
    assert "FINISHED" in status.stdout
    assert "src:/data" in status.stdout
    data = cli("-o", "json", "status", transfer_id).json()
    assert data["status"] == "FINISHED"
    assert (
        data["progress"]["bytes"] == data["progress"]["total_bytes"] == sum(map(len, sent.values()))
    )
    assert data["owner"] == "alice"
    assert data["completion_time"].endswith("Z")

    listing = cli("list")
    assert transfer_id in listing.stdout
    assert "FINISHED" in listing.stdout
    finished = cli("-o", "json", "list", "--status", "finished").json()
    assert transfer_id in [t["transfer_id"] for t in finished]
    assert cli("-o", "json", "list", "--status", "failed").json() == []
    # Only its owner and admins see it.
    assert transfer_id in [t["transfer_id"] for t in cli("-o", "json", "list", user="admin").json()]
    assert cli("-o", "json", "list", user="bob").json() == []
    hidden = cli("status", transfer_id, user="bob")
    assert hidden.code == 1
    assert hidden.stderr.startswith("datatx: error: not found")
    _no_secrets(cli, [webdav_server, wsgidav_server], submitted, status, listing)


def test_json_submit_and_watch_stream_for_scripts(
    cli: Cli, webdav_server: StorageServer, s3_server: StorageServer
) -> None:
    webdav_server.write("data/r.csv", b"x,y\n1,2\n")
    remotes = cli.remotes_file(webdav_server, s3_server)
    env = cli.env(DATATX_CREDENTIAL=s3_server.credential)  # the credential from the environment

    submitted = cli(
        "-o", "json", "submit", "src:/data", "dst:/bucket/r", f"--remotes={remotes}", env=env
    )
    assert submitted.code == 0, submitted.stderr
    created = submitted.json()
    assert created["text"] == "created"
    watched = cli("--output", "json", "watch", created["transfer_id"])

    assert watched.code == 0, watched.stderr
    states = watched.lines()
    assert states[-1]["status"] == "FINISHED"
    assert {state["transfer_id"] for state in states} == {created["transfer_id"]}
    assert s3_server.read("bucket/r/r.csv") == b"x,y\n1,2\n"
    _no_secrets(cli, [webdav_server, s3_server], submitted, watched)


def test_destroy_stops_a_running_transfer(
    cli: Cli, webdav_server: StorageServer, wsgidav_server: StorageServer
) -> None:
    webdav_server.write("data/big.bin", os.urandom(4_000_000))
    remotes = cli.remotes_file(webdav_server, wsgidav_server)
    credential = cli.private("credential", wsgidav_server.credential)
    transfer_id = cli(
        "-o",
        "json",
        "submit",
        "src:/data",
        "dst:/slow",
        f"--remotes={remotes}",
        f"--credential-file={credential}",
        "--option",
        "bandwidthLimit=100K",
    ).json()["transfer_id"]
    _wait_status(cli, transfer_id, "IN_PROGRESS")

    destroyed = cli("destroy", transfer_id)

    assert destroyed.code == 0, destroyed.stderr
    assert destroyed.stdout.startswith(f"{transfer_id} OK")
    watched = cli("watch", transfer_id)
    assert watched.code == 1  # it ended, but did not finish
    assert f"{transfer_id} CANCELLED" in watched.stdout
    assert cli("-o", "json", "status", transfer_id).json()["status"] == "CANCELLED"
    again = cli("-o", "json", "destroy", transfer_id)
    assert again.json()["transfer_id"] == transfer_id
