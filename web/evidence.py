"""Verification evidence for staff: the attempt's best frame and the reference crop. Every
image sent is one view, and each view is an audit event of the case (``evidence.viewed``)."""

from __future__ import annotations

from aiohttp import web

from cases.attempts import AttemptRecord, AttemptStore
from store.errors import BlobNotFound
from web.accounts import StaffRef
from web.keys import BANKING, BLOBS, DB, ENGINE
from web.middleware import json_error
from web.pages import current_staff

routes = web.RouteTableDef()
REVIEW_ROLES = frozenset({"advisor", "supervisor", "auditor"})


async def _attempt(request: web.Request) -> tuple[StaffRef, AttemptRecord]:
    staff = await current_staff(request, REVIEW_ROLES)
    row = await AttemptStore(request.app[DB]).get(request.match_info["attempt_id"])
    if row is None:
        raise web.HTTPNotFound(text="no such attempt")
    if staff.role == "advisor" and row.advisor_id != staff.id:
        raise web.HTTPForbidden(text="this attempt belongs to another advisor's call")
    return staff, row


async def _viewed(request: web.Request, staff: StaffRef, row: AttemptRecord, image: str) -> None:
    await AttemptStore(request.app[DB]).log_evidence_view(staff.id, row, image)


def _jpeg(data: bytes) -> web.Response:
    return web.Response(
        body=data, content_type="image/jpeg", headers={"Cache-Control": "private, no-store"}
    )


@routes.get("/staff/verification/{attempt_id}/best.jpg")
async def best_frame(request: web.Request) -> web.StreamResponse:
    """The best frame of the attempt (staff only)."""
    staff, row = await _attempt(request)
    if row.best_frame_blob_key is None:
        return json_error(404, "no_frame", "the attempt kept no frame")
    try:
        data = await request.app[BLOBS].get(row.best_frame_blob_key)
        await _viewed(request, staff, row, "best")
        return _jpeg(data)
    except BlobNotFound:
        return json_error(404, "no_frame", "the frame is missing from the blob store")


@routes.get("/staff/verification/{attempt_id}/reference.jpg")
async def reference(request: web.Request) -> web.StreamResponse:
    """The face crop of the customer's reference photo (staff only)."""
    staff, row = await _attempt(request)
    engine = request.app.get(ENGINE)
    model_key = engine.models.get("embedder", "") if engine is not None else ""
    template = await request.app[BANKING].reference_template(row.customer_id, model_key)
    if template is None or not template.crop_jpeg:
        return json_error(404, "no_reference", "no reference crop for this customer")
    await _viewed(request, staff, row, "reference")
    return _jpeg(template.crop_jpeg)
