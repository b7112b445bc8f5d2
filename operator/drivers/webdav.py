"""List the files under a WebDAV location (PROPFIND), for services that copy file by file.

FTS3 takes one source and one destination URL per file, so a directory has to be expanded
into its files first, with their sizes (for the progress figures).
"""

from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from datatx_operator.drivers.base import DriverError, Reason
from datatx_operator.drivers.http import ServiceClient, clip

DAV = "{DAV:}"
PROPFIND_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
    "<d:resourcetype/><d:getcontentlength/></d:prop></d:propfind>"
)
MAX_FILES = 10000


@dataclass(frozen=True)
class RemoteFile:
    relative: str  # "" for a single file, else the path below the listed directory
    size: int


@dataclass(frozen=True)
class _Entry:
    path: str
    collection: bool
    size: int


def join_url(base: str, path: str) -> str:
    """`base` (a remote's url) and a path below it, each segment percent-encoded once."""
    segments = [quote(part) for part in path.split("/") if part]
    return base.rstrip("/") + ("/" + "/".join(segments) if segments else "")


async def list_files(client: ServiceClient, url: str, what: str) -> list[RemoteFile]:
    """Files at `url`: itself when it is a file, else every file below it (recursively)."""
    root = unquote(urlsplit(url).path).rstrip("/")
    entries = await _propfind(client, url, what)
    if not entries:  # not a WebDAV server: the URL is taken as one plain file
        return [RemoteFile("", 0)]
    top = next((e for e in entries if e.path.rstrip("/") == root), entries[0])
    if not top.collection:
        return [RemoteFile("", top.size)]
    files: list[RemoteFile] = []
    pending = [e for e in entries if e is not top]
    while pending:
        entry = pending.pop()
        if entry.collection:
            here = entry.path.rstrip("/")
            below = await _propfind(client, _absolute(url, entry.path), what)
            pending.extend(e for e in below if e.path.rstrip("/") != here)
            continue
        files.append(RemoteFile(posixpath.relpath(entry.path, root), entry.size))
        if len(files) > MAX_FILES:
            raise DriverError(Reason.INVALID_REQUEST, f"{what} holds more than {MAX_FILES} files")
    return sorted(files, key=lambda file: file.relative)


def _absolute(url: str, path: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{quote(path)}"


async def _propfind(client: ServiceClient, url: str, what: str) -> list[_Entry]:
    response = await client.request(
        "PROPFIND",
        url,
        headers={"Depth": "1", "Content-Type": "application/xml"},
        content=PROPFIND_BODY,
    )
    status = response.status_code
    if status == 207:
        return _parse(response.content)
    if status in (405, 501):
        return []
    if status == 404:
        raise DriverError(Reason.NOT_FOUND, f"{what} does not exist")
    if status in (401, 403):
        raise DriverError(Reason.AUTHENTICATION_FAILED, f"{what}: listing refused ({status})")
    raise DriverError(
        Reason.REMOTE_FAILED, f"{what}: listing failed ({status} {clip(response.reason_phrase)})"
    )


def _parse(body: bytes) -> list[_Entry]:
    # The answer comes from the user's own storage; CPython's expat refuses entity
    # expansion attacks and ElementTree resolves no external entities.
    root = ET.fromstring(body)  # noqa: S314
    entries = []
    for response in root.iter(f"{DAV}response"):
        href = response.findtext(f"{DAV}href") or ""
        path = unquote(urlsplit(href).path)
        collection = response.find(f".//{DAV}resourcetype/{DAV}collection") is not None
        length = response.findtext(f".//{DAV}getcontentlength") or "0"
        entries.append(_Entry(path, collection, int(length) if length.isdigit() else 0))
    return entries
