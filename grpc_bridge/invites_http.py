"""Invite answers over HTTP: the link in the invite e-mail, `<base>/invites/<id>?token=...`.

GET only shows a form (mail scanners follow links, so GET never answers anything); POST
accepts with a credential or declines. The token is checked exactly as for the gRPC calls
(constant time, deadline, single use). The token is in the URL, so no access log records
query strings and pages tell browsers to send no referrer and to cache nothing.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from grpc_bridge.errors import (
    BridgeError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from grpc_bridge.transfers import Transfers

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
HTTP_STATUS: dict[type[BridgeError], int] = {
    InvalidArgumentError: 400,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    FailedPreconditionError: 409,
}
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
STYLE = "body{font-family:sans-serif;max-width:40em;margin:2em auto}input,button{margin:.3em 0}"


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


def _error_page(error: BridgeError) -> web.Response:
    status = next((code for kind, code in HTTP_STATUS.items() if isinstance(error, kind)), 503)
    return _page("Invite", f"<p>{html.escape(error.message)}</p>", status)


def _form(transfer_id: str, token: str, source: str, destination: str, requester: str) -> str:
    hidden = f'<input type=hidden name=token value="{html.escape(token)}">'
    return (
        f"<p>{html.escape(requester)} asks to copy <code>{html.escape(source)}</code> "
        f"to <code>{html.escape(destination)}</code> (transfer {html.escape(transfer_id)}).</p>"
        f'<form method=post action="/invites/{html.escape(transfer_id)}">{hidden}'
        "<p><label>Credential for the destination<br>"
        "<input type=password name=credential autocomplete=off required size=50></label></p>"
        "<button name=action value=accept>Accept</button></form>"
        f'<form method=post action="/invites/{html.escape(transfer_id)}">{hidden}'
        "<button name=action value=decline>Decline</button></form>"
    )


def invite_app(transfers: Transfers) -> web.Application:
    async def show(request: web.Request) -> web.Response:
        transfer_id = request.match_info["transfer_id"]
        token = request.query.get("token", "")
        try:
            record = await transfers.open_invite(transfer_id, token)
        except BridgeError as error:
            return _error_page(error)
        form = _form(transfer_id, token, record.source, record.destination, record.owner_user)
        return _page("Transfer invite", form)

    async def answer(request: web.Request) -> web.Response:
        transfer_id = request.match_info["transfer_id"]
        form = await request.post()
        token, action = str(form.get("token", "")), str(form.get("action", ""))
        try:
            if action == "accept":
                credential = str(form.get("credential", ""))
                await transfers.accept_invite(transfer_id, token, credential)
                return _page("Invite accepted", "<p>Thank you. The transfer will start.</p>")
            if action == "decline":
                await transfers.decline_invite(transfer_id, token)
                return _page("Invite declined", "<p>The transfer will not run.</p>")
            raise InvalidArgumentError("action", "must be accept or decline")
        except BridgeError as error:
            return _error_page(error)

    @web.middleware
    async def access_log(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as error:
            response = error
        log.info("http %s %s -> %d", request.method, request.path, response.status)
        if isinstance(response, web.HTTPException):
            raise response
        return response

    app = web.Application(client_max_size=MAX_BODY, middlewares=[access_log])
    app.router.add_get("/invites/{transfer_id}", show)
    app.router.add_post("/invites/{transfer_id}", answer)
    return app
