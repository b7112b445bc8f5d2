"""Administration of the test Rucio server; runs in Rucio's own venv (see rucio.py).

    python rucio_tool.py bootstrap          create the SQLite schema, the base VO and root
    python rucio_tool.py setup ROOT         two posix RSEs, scope `test`, limits, distances
    python rucio_tool.py upload ROOT NAME SIZE   upload a file of SIZE random bytes as test:NAME
    python rucio_tool.py dataset ROOT NAME COUNT SIZE   dataset test:NAME of COUNT new files
    python rucio_tool.py conveyor [BULK]    submitter, poller, finisher: one pass each, the
                                            submitter taking at most BULK transfers
    python rucio_tool.py oidc-token ACCOUNT  print an OIDC access token Rucio accepts
    python rucio_tool.py rule-state ID STATE     set a rule's state as an administrator would

Everything reads RUCIO_CONFIG; no secret is passed on the command line (a token made
here is printed on stdout).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import secrets
import sys
import time
from pathlib import Path

SOURCE_RSE = "SRC-RSE"
DESTINATION_RSE = "DST-RSE"
SCOPE = "test"
ISSUER = "https://idp.example.org/"


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


def upload(root: Path, *names: str, size: int) -> None:
    from rucio.client import Client
    from rucio.client.uploadclient import UploadClient

    items = []
    for name in names:
        path = root / "uploads" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        items.append({"path": str(path), "rse": SOURCE_RSE, "did_scope": SCOPE, "did_name": name})
    UploadClient(Client()).upload(items)


def dataset(root: Path, name: str, count: int, size: int) -> None:
    """A dataset of `count` new files `<name>-<i>`, so that a rule on it has one lock each."""
    from rucio.client import Client

    files = [f"{name}-{index}" for index in range(1, count + 1)]
    upload(root, *files, size=size)
    client = Client()
    client.add_dataset(SCOPE, name)
    client.attach_dids(SCOPE, name, [{"scope": SCOPE, "name": file} for file in files])


def oidc_token(account: str) -> None:
    """An OIDC access token for a new OIDC identity of `account`, saved as Rucio saves the
    JWTs its IdP validated (no IdP runs here, so the signature check is what is skipped)."""
    from rucio.common.types import InternalAccount
    from rucio.core import oidc
    from rucio.core.identity import add_account_identity
    from rucio.db.sqla.constants import IdentityType

    subject = f"datatx-{secrets.token_hex(6)}"
    identity = oidc.oidc_identity_string(subject, ISSUER)
    owner = InternalAccount(account)
    add_account_identity(identity, IdentityType.OIDC, owner, "oidc@example.org", default=True)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    claims = {"sub": subject, "iss": ISSUER, "exp": int(expires.timestamp()), "aud": "rucio"}
    parts = [{"alg": "RS256", "typ": "JWT"}, {**claims, "scope": "openid profile"}]
    encoded = [base64.urlsafe_b64encode(json.dumps(part).encode()) for part in parts]
    signature = base64.urlsafe_b64encode(secrets.token_bytes(64))
    token = b".".join([*encoded, signature]).decode().replace("=", "")
    save = getattr(oidc, "__save_validated_token")
    save(
        token,
        {
            "account": owner,
            "identity": identity,
            "lifetime": expires.replace(tzinfo=None),  # Rucio keeps naive UTC
            "audience": "rucio",
            "authz_scope": "openid profile",
        },
    )
    print(token)


def conveyor(bulk: int = 100) -> None:
    """One pass of each conveyor daemon, without their 10 s partition wait; the submitter
    takes at most `bulk` transfers, so that a small bulk leaves a rule part done."""
    from rucio.daemons.conveyor.finisher import finisher
    from rucio.daemons.conveyor.poller import poller
    from rucio.daemons.conveyor.submitter import submitter

    started = time.monotonic()
    submitter(
        once=True,
        bulk=bulk,
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
        upload(Path(args[0]), args[1], size=int(args[2]))
    elif command == "dataset":
        dataset(Path(args[0]), args[1], int(args[2]), int(args[3]))
    elif command == "conveyor":
        conveyor(*(int(arg) for arg in args))
    elif command == "oidc-token":
        oidc_token(args[0])
    elif command == "rule-state":
        rule_state(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
