"""Administration of the test Rucio server; runs in Rucio's own venv (see rucio.py).

    python rucio_tool.py bootstrap          create the SQLite schema, the base VO and root
    python rucio_tool.py setup ROOT         two posix RSEs, scope `test`, limits, distances
    python rucio_tool.py upload ROOT NAME SIZE   upload a file of SIZE random bytes as test:NAME
    python rucio_tool.py conveyor           submitter, poller, finisher: one pass each
    python rucio_tool.py rule-state ID STATE     set a rule's state as an administrator would

Everything reads RUCIO_CONFIG; no secret is passed on the command line.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

SOURCE_RSE = "SRC-RSE"
DESTINATION_RSE = "DST-RSE"
SCOPE = "test"


def bootstrap() -> None:
    from rucio.db.sqla.util import build_database, create_base_vo, create_root_account

    build_database()
    create_base_vo()
    create_root_account()


def setup(root: Path) -> None:
    from rucio.client import Client

    client = Client()
    for rse in (SOURCE_RSE, DESTINATION_RSE):
        client.add_rse(rse)
        directory = root / "rses" / rse
        directory.mkdir(parents=True, exist_ok=True)
        client.add_protocol(
            rse,
            {
                "scheme": "file",
                "hostname": "localhost",
                "port": 0,
                "prefix": f"{directory}/",
                "impl": "rucio.rse.protocols.posix.Default",
                "domains": {
                    "lan": {"read": 1, "write": 1, "delete": 1},
                    "wan": {
                        "read": 1,
                        "write": 1,
                        "delete": 1,
                        "third_party_copy_read": 1,
                        "third_party_copy_write": 1,
                    },
                },
            },
        )
        client.set_local_account_limit("root", rse, 10**12)
    client.add_distance(SOURCE_RSE, DESTINATION_RSE, {"distance": 1})
    client.add_distance(DESTINATION_RSE, SOURCE_RSE, {"distance": 1})
    client.add_scope("root", SCOPE)


def upload(root: Path, name: str, size: int) -> None:
    from rucio.client import Client
    from rucio.client.uploadclient import UploadClient

    path = root / "uploads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    item = {"path": str(path), "rse": SOURCE_RSE, "did_scope": SCOPE, "did_name": name}
    UploadClient(Client()).upload([item])


def conveyor() -> None:
    """One pass of each conveyor daemon, without their 10 s partition wait."""
    from rucio.daemons.conveyor.finisher import finisher
    from rucio.daemons.conveyor.poller import poller
    from rucio.daemons.conveyor.submitter import submitter

    started = time.monotonic()
    submitter(
        once=True,
        partition_wait_time=0,
        transfertools=["mock"],
        transfertype="single",
        filter_transfertool=None,
    )
    poller(
        once=True,
        older_than=0,
        partition_wait_time=0,
        transfertool="mock",
        filter_transfertool=None,
    )
    finisher(once=True, partition_wait_time=0)
    logging.info("conveyor pass took %.2f s", time.monotonic() - started)


def rule_state(rule_id: str, state: str) -> None:
    from rucio.client import Client

    Client().update_replication_rule(rule_id, {"state": state})


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command, *args = argv
    if command == "bootstrap":
        bootstrap()
    elif command == "setup":
        setup(Path(args[0]))
    elif command == "upload":
        upload(Path(args[0]), args[1], int(args[2]))
    elif command == "conveyor":
        conveyor()
    elif command == "rule-state":
        rule_state(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
