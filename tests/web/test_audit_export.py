"""The auditor downloads a case as one signed bundle; it checks out offline against the server's
audit key, holds both recordings and the co-browse stream, and the download is an audit event."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from pathlib import Path

from cases.bundle import verify_bundle
from store.signing import signing_key
from tests.web.conftest import World
from tests.web.test_audit_pages import STREAM, Side, as_staff, closed_case, events, make_webm
from web.keys import SETTINGS


async def test_the_auditor_downloads_a_signed_bundle_that_verifies_offline(
    world: World, tmp_path: Path
) -> None:
    red = await asyncio.to_thread(make_webm, (200, 30, 30), 1.0)
    blue = await asyncio.to_thread(make_webm, (30, 30, 200), 1.0)
    public_id = await closed_case(
        world,
        {"customer": Side(red, 0, 1000), "advisor": Side(blue, 300, 1000)},
        chat=("hi",),
        cobrowse=STREAM,
    )
    auditor = await as_staff(world, "auditor1")
    resp = await auditor.get(f"/audit/cases/{public_id}/export.zip")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/zip"
    assert f'filename="case-{public_id}.zip"' in resp.headers["Content-Disposition"]
    data = await resp.read()
    bundle = tmp_path / "case.zip"
    bundle.write_bytes(data)

    key = signing_key(world.app[SETTINGS].audit).public_key()
    report = await asyncio.to_thread(verify_bundle, bundle, key)
    assert report.ok and report.pinned, report.to_json()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("recordings/customer.webm") == red
        assert zf.read("recordings/advisor.webm") == blue
        assert zf.read(f"cobrowse/{hashlib.sha256(STREAM).hexdigest()}.jsonl") == STREAM
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["case"] == public_id
    assert await events(world, "audit.exported") == 1


async def test_an_export_of_an_unknown_case_is_404_and_advisors_get_none(world: World) -> None:
    auditor = await as_staff(world, "auditor1")
    resp = await auditor.get("/audit/cases/no-such-case/export.zip")
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    resp = await auditor.get("/audit/cases/bad..id/export.zip")
    assert resp.status == 404
    public_id = await closed_case(world, {})
    advisor = await as_staff(world, "advisor1")
    resp = await advisor.get(f"/audit/cases/{public_id}/export.zip")
    assert resp.status == 403
    assert await events(world, "audit.exported") == 0
