"""Where settings come from: flags, then DATATX_* variables, then the config file, then
the files `make dev-up` writes; the login comes whole from the highest layer that has one."""

from __future__ import annotations

from pathlib import Path

import pytest

from datatx_cli.config import load
from datatx_cli.errors import CliError, ExitCode


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path]:
    """A config file and a directory holding `.cluster/` files, all naming different values."""
    config = tmp_path / "config.toml"
    config.write_text('address = "file:1"\ntimeout = 7\ntoken_file = "/from/file"\n')
    cwd = tmp_path / "repo"
    (cwd / ".cluster").mkdir(parents=True)
    (cwd / ".cluster" / "bridge-address").write_text("cluster:2\n")
    (cwd / ".cluster" / "bridge-token").write_text("cluster-token\n")
    return config, cwd


def test_flags_beat_environment_beat_file_beat_dev_up(layers: tuple[Path, Path]) -> None:
    config, cwd = layers
    env = {"DATATX_ADDRESS": "env:3", "DATATX_TOKEN": "env-token"}

    flags_win = load({"address": "flag:4", "token_file": Path("/flag")}, env, config, cwd)
    assert flags_win.address == "flag:4"
    assert flags_win.token_file == Path("/flag")
    assert flags_win.token is None  # the flag's token file, not the environment's token
    assert flags_win.timeout == 7

    env_wins = load({}, env, config, cwd)
    assert env_wins.address == "env:3"
    assert env_wins.bearer() == "env-token"
    assert env_wins.token_file is None

    file_wins = load({}, {}, config, cwd)
    assert file_wins.address == "file:1"
    assert file_wins.token_file == Path("/from/file")

    dev_up = load({}, {"XDG_CONFIG_HOME": str(cwd / "no-config")}, None, cwd)
    assert dev_up.address == "cluster:2"
    assert dev_up.bearer() == "cluster-token"


def test_config_file_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="not found") as missing:
        load({}, {"DATATX_CONFIG": str(tmp_path / "none.toml")}, None, tmp_path)
    assert missing.value.code is ExitCode.BAD_INPUT
    broken = tmp_path / "broken.toml"
    broken.write_text("address = \n")
    with pytest.raises(CliError, match=str(broken)):
        load({}, {}, broken, tmp_path)
    # The default file may be absent; then the address must come from somewhere else.
    with pytest.raises(CliError, match="no bridge address"):
        load({}, {"XDG_CONFIG_HOME": str(tmp_path)}, None, tmp_path)
