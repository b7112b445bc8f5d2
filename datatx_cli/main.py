"""`datatx`: start, follow and stop data transfers through the datatx bridge (gRPC).

Connection settings come from flags, `DATATX_*` environment variables, the config file
(`~/.config/datatx/config.toml`) and, for the local cluster, `.cluster/bridge-address` and
`.cluster/bridge-token`, in that order. See `config.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from datatx.v1 import datatx_pb2 as pb
from datatx_cli import config, render, watching
from datatx_cli.client import Bridge
from datatx_cli.errors import CliError, ExitCode
from datatx_cli.secrets_input import read_secret, require_secret
from datatx_cli.submission import driver_options, load_remotes

P = ParamSpec("P")
R = TypeVar("R")


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass
class Session:
    """What the global options said; settings are resolved when a command needs them."""

    flags: dict[str, object]
    config_path: Path | None
    output: Output
    console: Console = field(default_factory=render.stdout)

    @property
    def json(self) -> bool:
        return self.output is Output.JSON

    def bridge(self, *, login: bool = True) -> Bridge:
        return Bridge(config.load(self.flags, config_path=self.config_path), login=login)


app = typer.Typer(
    name="datatx",
    help="Start, follow and stop data transfers through the datatx bridge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def handled(command: Callable[P, R]) -> Callable[P, R]:
    """A CliError ends the command with one line on stderr and its exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CliError as error:
            errors.print(f"datatx: error: {error.message}", style="red", markup=False)
            raise typer.Exit(int(error.code)) from None
        except KeyboardInterrupt:
            errors.print("datatx: interrupted (a running transfer goes on)")
            raise typer.Exit(130) from None

    return run


def _session(ctx: typer.Context) -> Session:
    session = ctx.obj
    assert isinstance(session, Session)
    return session


@app.callback()
def main(
    ctx: typer.Context,
    address: Annotated[
        str | None, typer.Option(help="The bridge, host:port (env DATATX_ADDRESS).")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="A file holding the login token (env DATATX_TOKEN_FILE or DATATX_TOKEN)."
        ),
    ] = None,
    tls: Annotated[
        bool | None, typer.Option("--tls/--no-tls", help="Use TLS (env DATATX_TLS).")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA certificates for TLS (implies --tls).")
    ] = None,
    client_cert_file: Annotated[
        Path | None, typer.Option(help="Client certificate for mutual TLS.")
    ] = None,
    client_key_file: Annotated[Path | None, typer.Option(help="Its private key.")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds per call (env DATATX_TIMEOUT; default 30).")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (env DATATX_CONFIG; default ~/.config/datatx/config.toml).",
        ),
    ] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", envvar="DATATX_OUTPUT", help="text or json.")
    ] = Output.TEXT,
) -> None:
    ctx.obj = Session(
        flags={
            "address": address,
            "token_file": token_file,
            "tls": tls,
            "ca_file": ca_file,
            "client_cert_file": client_cert_file,
            "client_key_file": client_key_file,
            "timeout": timeout,
        },
        config_path=config_file,
        output=output,
    )


def _follow(session: Session, bridge: Bridge, transfer_id: str) -> None:
    """Follow until the transfer ends; exit 0 only when it finished."""
    if session.json:
        last = watching.stream_json(bridge, transfer_id)
    else:
        last = watching.show(bridge, transfer_id, session.console)
    if last.status != pb.FINISHED:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command()
@handled
def submit(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(help="Source, remote:path.")],
    dest: Annotated[str, typer.Argument(help="Destination, remote:path.")],
    remotes: Annotated[
        Path,
        typer.Option(help="YAML file of the remotes (with their secret options); - reads stdin."),
    ],
    credential_file: Annotated[
        Path | None,
        typer.Option(help="The destination credential (env DATATX_CREDENTIAL); none: invite."),
    ] = None,
    invitee_name: Annotated[
        str | None, typer.Option(help="Who is asked when no credential.")
    ] = None,
    invitee_email: Annotated[str | None, typer.Option(help="The invitee's e-mail.")] = None,
    invitee_webhook: Annotated[str | None, typer.Option(help="The invitee's webhook URL.")] = None,
    driver: Annotated[
        str | None, typer.Option(help="rclone (default), fts, rucio, filesender.")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="Driver option key=value (repeatable).")
    ] = None,
    retries: Annotated[int | None, typer.Option(help="Retries of a failed run (0-10).")] = None,
    run_timeout: Annotated[int | None, typer.Option(help="Deadline of one run, seconds.")] = None,
    request_id: Annotated[
        str | None, typer.Option(help="Repeating a request with this id returns the same transfer.")
    ] = None,
    watch: Annotated[bool, typer.Option(help="Follow the transfer until it ends.")] = False,
) -> None:
    """Start a transfer. Without a credential, the invitee is asked for one."""
    session = _session(ctx)
    request = pb.DoTransferRequest(
        src=src,
        dest=dest,
        remotes=load_remotes(remotes),
        credential=read_secret(
            credential_file, "DATATX_CREDENTIAL", "credential", "--credential-file", required=False
        )
        or "",
        driver=driver or "",
        request_id=request_id or "",
    )
    if invitee_name or invitee_email or invitee_webhook:
        request.invitee.CopyFrom(
            pb.Invitee(
                name=invitee_name or "",
                email=invitee_email or "",
                webhook_url=invitee_webhook or "",
            )
        )
    options = driver_options(option or [])
    if options is not None:
        request.options.CopyFrom(options)
    if retries is not None:
        request.retries = retries
    if run_timeout is not None:
        request.timeout_seconds = run_timeout
    with session.bridge() as bridge:
        reply = bridge.call(bridge.stub.DoTransfer, request)
        if session.json:
            render.emit_json({"transfer_id": reply.transfer_id, "text": reply.text})
        else:
            session.console.print(reply.transfer_id, reply.text)
        if watch:
            _follow(session, bridge, reply.transfer_id)


@app.command()
@handled
def status(
    ctx: typer.Context, transfer_id: Annotated[str, typer.Argument(help="The transfer.")]
) -> None:
    """Show one transfer."""
    session = _session(ctx)
    with session.bridge() as bridge:
        reply = bridge.call(bridge.stub.GetStatus, pb.GetStatusRequest(transfer_id=transfer_id))
    if session.json:
        render.emit_json(render.transfer_data(reply.transfer))
    else:
        session.console.print(render.details(reply.transfer))


@app.command()
@handled
def watch(
    ctx: typer.Context, transfer_id: Annotated[str, typer.Argument(help="The transfer.")]
) -> None:
    """Follow a transfer until it ends (exit 0 only if it finished)."""
    session = _session(ctx)
    with session.bridge() as bridge:
        _follow(session, bridge, transfer_id)


def _statuses(names: list[str]) -> list[pb.Status.ValueType]:
    valid = [name for name in pb.Status.keys() if name != "STATUS_UNSPECIFIED"]  # noqa: SIM118
    chosen = []
    for name in names:
        key = name.upper().replace("-", "_")
        if key not in valid:
            raise CliError(
                f"--status {name!r}: one of {', '.join(v.lower() for v in valid)}",
                ExitCode.BAD_INPUT,
            )
        chosen.append(pb.Status.Value(key))
    return chosen


@app.command("list")
@handled
def list_transfers(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None, typer.Option(help="Only these statuses, e.g. finished (repeatable).")
    ] = None,
    driver: Annotated[
        list[str] | None, typer.Option(help="Only these drivers (repeatable).")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Admins: transfers of this user.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
) -> None:
    """List your transfers (admins: everyone's), oldest first."""
    session = _session(ctx)
    request = pb.ListTransfersRequest(
        statuses=_statuses(status or []), drivers=driver or [], owner=owner or ""
    )
    with session.bridge() as bridge:
        transfers = bridge.list_all(request, limit)
    if session.json:
        render.emit_json([render.transfer_data(transfer) for transfer in transfers])
    elif transfers:
        session.console.print(render.table(transfers))
    else:
        session.console.print("no transfers")


@app.command()
@handled
def destroy(
    ctx: typer.Context, transfer_id: Annotated[str, typer.Argument(help="The transfer.")]
) -> None:
    """Stop a transfer and destroy its credentials (exit 1 if it could not be stopped)."""
    session = _session(ctx)
    with session.bridge() as bridge:
        reply = bridge.call(
            bridge.stub.DestroyTransfer, pb.DestroyTransferRequest(transfer_id=transfer_id)
        )
    result = str(pb.Result.Name(reply.result))
    if session.json:
        render.emit_json({"transfer_id": transfer_id, "result": result, "text": reply.text})
    else:
        session.console.print(transfer_id, result, reply.text)
    if reply.result != pb.OK:
        raise typer.Exit(int(ExitCode.FAILED))


TokenFile = Annotated[
    Path | None, typer.Option(help="File with the invite token (env DATATX_INVITE_TOKEN).")
]


def _invite_token(path: Path | None) -> str:
    return require_secret(path, "DATATX_INVITE_TOKEN", "invite token", "--invite-token-file")


@app.command()
@handled
def accept(
    ctx: typer.Context,
    transfer_id: Annotated[str, typer.Argument(help="The transfer you are invited to.")],
    invite_token_file: TokenFile = None,
    credential_file: Annotated[
        Path | None,
        typer.Option(help="File with the destination credential (env DATATX_CREDENTIAL)."),
    ] = None,
) -> None:
    """Accept an invite with the credential that opens the destination (no login needed)."""
    session = _session(ctx)
    request = pb.AcceptInviteRequest(
        transfer_id=transfer_id,
        invite_token=_invite_token(invite_token_file),
        credential=require_secret(
            credential_file, "DATATX_CREDENTIAL", "credential", "--credential-file"
        ),
    )
    with session.bridge(login=False) as bridge:
        reply = bridge.call(bridge.stub.AcceptInvite, request)
    _said(session, transfer_id, reply.text)


@app.command()
@handled
def decline(
    ctx: typer.Context,
    transfer_id: Annotated[str, typer.Argument(help="The transfer you are invited to.")],
    invite_token_file: TokenFile = None,
) -> None:
    """Decline an invite; the transfer will not run (no login needed)."""
    session = _session(ctx)
    request = pb.DeclineInviteRequest(
        transfer_id=transfer_id, invite_token=_invite_token(invite_token_file)
    )
    with session.bridge(login=False) as bridge:
        reply = bridge.call(bridge.stub.DeclineInvite, request)
    _said(session, transfer_id, reply.text)


def _said(session: Session, transfer_id: str, text: str) -> None:
    if session.json:
        render.emit_json({"transfer_id": transfer_id, "text": text})
    else:
        session.console.print(transfer_id, text)
