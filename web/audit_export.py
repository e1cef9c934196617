"""The auditor's download of a case as one signed bundle (``cases.bundle``).

The zip is written to a private temporary folder in a worker thread, streamed to the auditor in
1 MiB pieces, and removed. The export is an audit event (``audit.exported``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path

from aiohttp import web

from cases.bundle import export_case
from cases.errors import CaseNotFound
from store.errors import BlobCorrupt, BlobNotFound
from store.signing import signing_key
from web.audit import auditor_for_api
from web.keys import BLOBS, DB, SETTINGS
from web.middleware import json_error

routes = web.RouteTableDef()
CHUNK = 1024 * 1024
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _read_chunk(path: Path, offset: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(CHUNK)


@routes.get("/audit/cases/{public_id}/export.zip")
async def export(request: web.Request) -> web.StreamResponse:
    """The signed bundle of one closed case, as a download (auditors only)."""
    staff = await auditor_for_api(request)
    public_id = request.match_info["public_id"]
    if not _PUBLIC_ID.fullmatch(public_id):  # it names the file too
        return json_error(404, "not_found", "no closed case with that id")
    settings = request.app[SETTINGS]
    key = await asyncio.to_thread(signing_key, settings.audit)
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="export-"))
    try:
        dest = folder / f"case-{public_id}.zip"
        try:
            info = await export_case(
                request.app[DB], request.app[BLOBS], key, public_id, staff.id, dest
            )
        except CaseNotFound:
            return json_error(404, "not_found", "no closed case with that id")
        except (BlobNotFound, BlobCorrupt) as err:
            return json_error(
                409,
                "evidence_damaged",
                f"a stored file of this case is missing or changed ({type(err).__name__}); "
                "run `cloudbranch audit verify`",
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="case-{public_id}.zip"',
                "Content-Length": str(info.size),
                "Cache-Control": "private, no-store",
            }
        )
        await response.prepare(request)
        offset = 0
        while offset < info.size:
            chunk = await asyncio.to_thread(_read_chunk, dest, offset)
            if not chunk:
                break
            await response.write(chunk)
            offset += len(chunk)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)
