"""Failures: one clear line on stderr, an exit code scripts can tell apart, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Cli, Result
from tests.servers.storage import StorageServer


def _one_line(result: Result, code: int, *words: str) -> None:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("datatx: error: ")
    for word in words:
        assert word in lines[0]


def _count(cli: Cli) -> int:
    return len(cli("-o", "json", "list", user="admin").json())


def test_bad_input_exits_2_and_creates_nothing(
    cli: Cli, webdav_server: StorageServer, wsgidav_server: StorageServer
) -> None:
    remotes = cli.remotes_file(webdav_server, wsgidav_server)
    credential = cli.private("credential", wsgidav_server.credential)
    before = _count(cli)

    refused = cli(
        "submit", "no-colon", "dst:/x", f"--remotes={remotes}", f"--credential-file={credential}"
    )
    _one_line(refused, 2, "invalid argument", "src")
    untyped = cli.private("bad.yaml", "src: {options: {url: 'http://x/'}}\n")
    bad_file = cli("submit", "src:/a", "dst:/b", f"--remotes={untyped}")
    _one_line(bad_file, 2, str(untyped), "src.type")
    missing = cli("submit", "src:/a", "dst:/b", "--remotes=/nonexistent.yaml")
    _one_line(missing, 2, "/nonexistent.yaml")
    option = cli("submit", "src:/a", "dst:/b", f"--remotes={remotes}", "--option", "novalue")
    _one_line(option, 2, "key=value")
    status = cli("list", "--status", "sleeping")
    _one_line(status, 2, "sleeping", "finished")
    assert cli("status").code == 2  # usage: the transfer id is missing

    assert _count(cli) == before


def test_not_found_exits_1(cli: Cli) -> None:
    _one_line(cli("status", "dt-000000000000"), 1, "not found")
    _one_line(cli("destroy", "dt-000000000000"), 1, "not found")


def test_login_problems_exit_4_without_showing_the_token(cli: Cli) -> None:
    wrong = cli.private("wrong.token", "not-a-token-" + "x" * 20)
    bad = cli("list", env=cli.env(DATATX_TOKEN_FILE=str(wrong)))
    _one_line(bad, 4, "unauthenticated")
    assert "not-a-token" not in bad.stderr
    _one_line(cli("list", user=None), 4, "not logged in", "DATATX_TOKEN")
    unreadable = cli("list", env=cli.env(DATATX_TOKEN_FILE="/nonexistent/token"))
    _one_line(unreadable, 1, "/nonexistent/token")


def test_unreachable_bridge_exits_3(cli: Cli, unused_port: int) -> None:
    result = cli("--timeout", "5", "list", env=cli.env(DATATX_ADDRESS=f"127.0.0.1:{unused_port}"))
    _one_line(result, 3, f"cannot reach the bridge at 127.0.0.1:{unused_port}")


def test_missing_or_bad_settings_exit_2(cli: Cli) -> None:
    no_address = {k: v for k, v in cli.env().items() if k != "DATATX_ADDRESS"}
    _one_line(cli("list", env=no_address), 2, "no bridge address")
    _one_line(cli("--address", "nowhere", "list"), 2, "address", "host:port")
    config = cli.home / ".config" / "datatx" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('adress = "typo:1"\n')
    _one_line(cli("list"), 2, str(config), "adress")


def test_settings_from_the_config_file_and_the_dev_up_files(cli: Cli, tmp_path: Path) -> None:
    """`make dev-up` leaves .cluster/bridge-address and .cluster/bridge-token: from the
    repository root, `datatx` needs no setting at all; a config file works the same way."""
    base = {"PATH": cli.env()["PATH"], "HOME": str(cli.home)}
    repo = tmp_path / "repo"
    (repo / ".cluster").mkdir(parents=True)
    (repo / ".cluster" / "bridge-address").write_text(cli.setup.release.grpc_address + "\n")
    (repo / ".cluster" / "bridge-token").write_text(cli.setup.tokens["admin"] + "\n")
    assert cli("-o", "json", "list", env=base, cwd=repo).code == 0

    config = cli.home / ".config" / "datatx" / "config.toml"
    config.parent.mkdir(parents=True)
    token = cli.private("alice.token", cli.setup.tokens["alice"])
    config.write_text(f'address = "{cli.setup.release.grpc_address}"\ntoken_file = "{token}"\n')
    assert cli("-o", "json", "list", env=base).code == 0


@pytest.mark.parametrize("command", [["--help"], ["submit", "--help"], ["accept", "--help"]])
def test_help_never_offers_a_secret_on_the_command_line(cli: Cli, command: list[str]) -> None:
    shown = cli(*command)
    assert shown.code == 0
    for flag in ("--token ", "--credential ", "--invite-token ", "--password"):
        assert flag not in shown.stdout
