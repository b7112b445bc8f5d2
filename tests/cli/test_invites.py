"""The invitee answers with `datatx accept` / `datatx decline`: no login, the invite token
and the credential from files or the environment, never the command line."""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import Cli
from tests.servers.notify import Webhook
from tests.servers.storage import StorageServer


def _invite(webhook: Webhook, transfer_id: str) -> dict[str, Any]:
    while True:
        payload: dict[str, Any] = webhook.next(timeout=60).json()
        if payload["transfer_id"] == transfer_id:
            return payload


def _submit_with_invite(
    cli: Cli, source: StorageServer, dest: StorageServer, path: str, webhook: Webhook
) -> str:
    remotes = cli.remotes_file(source, dest)
    submitted = cli(
        "-o",
        "json",
        "submit",
        "src:/data",
        f"dst:{path}",
        f"--remotes={remotes}",
        "--invitee-name=Dora",
        f"--invitee-webhook={webhook.url}",
    )
    assert submitted.code == 0, submitted.stderr
    return str(submitted.json()["transfer_id"])


def test_accept_with_files_then_the_transfer_runs(
    cli: Cli, webhook_receiver: Webhook, webdav_server: StorageServer, wsgidav_server: StorageServer
) -> None:
    webdav_server.write("data/paper.pdf", b"%PDF-1.7 results")
    transfer_id = _submit_with_invite(
        cli, webdav_server, wsgidav_server, "/shared", webhook_receiver
    )
    token = _invite(webhook_receiver, transfer_id)["invite_token"]
    waiting = cli("-o", "json", "status", transfer_id).json()
    assert waiting["status"] == "WAITING_FOR_INVITE_ACCEPTANCE"
    assert waiting["invite_deadline"]

    accepted = cli(
        "accept",
        transfer_id,
        f"--invite-token-file={cli.private('invite', token)}",
        f"--credential-file={cli.private('credential', wsgidav_server.credential)}",
        user=None,  # the invitee has no login: the invite token is the proof
    )

    assert accepted.code == 0, accepted.stderr
    assert accepted.stdout.startswith(f"{transfer_id} accepted")
    assert cli("watch", transfer_id).code == 0
    assert wsgidav_server.read("shared/paper.pdf") == b"%PDF-1.7 results"
    for output in (accepted.stdout, accepted.stderr):
        assert token not in output
        assert wsgidav_server.credential not in output


def test_decline_from_the_environment_and_a_used_token_is_refused(
    cli: Cli, webhook_receiver: Webhook, webdav_server: StorageServer, wsgidav_server: StorageServer
) -> None:
    webdav_server.write("data/x", b"x")
    transfer_id = _submit_with_invite(cli, webdav_server, wsgidav_server, "/no", webhook_receiver)
    token = _invite(webhook_receiver, transfer_id)["invite_token"]
    env = cli.env(user=None, DATATX_INVITE_TOKEN=token)

    declined = cli("-o", "json", "decline", transfer_id, env=env)

    assert declined.code == 0, declined.stderr
    assert "declined" in declined.json()["text"]
    assert cli("watch", transfer_id).code == 1
    assert cli("-o", "json", "status", transfer_id).json()["status"] == "INVITE_DECLINED"
    again = cli("accept", transfer_id, env={**env, "DATATX_CREDENTIAL": wsgidav_server.credential})
    assert again.code != 0
    assert again.stderr.startswith("datatx: error: ")
    assert len(again.stderr.strip().splitlines()) == 1
    assert not wsgidav_server.path("no").exists()
