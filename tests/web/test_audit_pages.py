"""The auditors' console through the real handlers: who gets in, the recordings' byte ranges,
the verdicts, the search filters and the case page."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from cases.states import CaseState
from store.audit import add_event
from store.models import AuditEvent, Customer, Recording, Staff
from tests.web.conftest import ADVISOR_PASSWORD, World, csrf_of, identify, login
from web.accounts import create_staff
from web.keys import BLOBS, CASES, DB

Client = TestClient[web.Request, web.Application]


# ---- recordings -------------------------------------------------------------------------------


def make_webm(colour: tuple[int, int, int], seconds: float, fps: int = 10) -> bytes:
    """A real VP8 WebM of ``seconds`` of one colour with a moving bar (160x120)."""
    out = io.BytesIO()
    with av.open(out, "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for i in range(round(seconds * fps)):
            image = np.empty((120, 160, 3), dtype=np.uint8)
            image[:] = colour
            x = (i * 8) % 150
            image[100:, x : x + 10] = 255 - np.array(colour, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class Side:
    """One party's recording to seed: the bytes, where it starts on the common clock, how long."""

    data: bytes
    offset_ms: int
    duration_ms: int


async def staff_id(world: World, username: str) -> int:
    async with world.app[DB].session() as s:
        return int((await s.scalars(select(Staff.id).where(Staff.username == username))).one())


async def closed_case(
    world: World,
    sides: dict[str, Side],
    *,
    service: str = "pin_change",
    customer: str = "Ada Lovelace",
    chat: tuple[str, ...] = (),
    cobrowse: bytes | None = None,
) -> str:
    """A case walked from intake to close, with recordings, chat and a stored co-browse stream
    (as ``cases.cobrowse_desk`` stores one); returns its public id."""
    cases = world.app[CASES]
    async with world.app[DB].session() as s:
        customer_id = (await s.scalars(select(Customer.id).where(Customer.name == customer))).one()
    case = await cases.open(customer_id, service, "en", False)
    for state in (CaseState.CONSENTED, CaseState.QUEUED):
        await cases.move(case.public_id, state)
    advisor = await staff_id(world, "advisor1")
    await cases.move(case.public_id, CaseState.IN_CALL, advisor_id=advisor)
    zero = datetime.now(UTC)
    for side, rec in sides.items():
        key = await world.app[BLOBS].put(rec.data)
        async with world.app[DB].session() as s, s.begin():
            s.add(
                Recording(
                    case_id=case.id,
                    side=side,
                    blob_key=key,
                    content_type="video/webm",
                    size=len(rec.data),
                    duration_ms=rec.duration_ms,
                    offset_ms=rec.offset_ms,
                    clock_zero=zero,
                    video_frames=rec.duration_ms // 100,
                    audio_frames=0,
                    dropped_frames=0,
                    recovered=False,
                    stored_at=zero,
                    deleted_at=None,
                )
            )
    for text in chat:
        await cases.add_chat(case.id, "customer", text)
    if cobrowse is not None:
        key = await world.app[BLOBS].put(cobrowse)
        async with world.app[DB].session() as s, s.begin():
            await add_event(
                s,
                action="cobrowse.stored",
                outcome="ok",
                actor_kind="system",
                case_id=case.id,
                detail={
                    "sha256": key,
                    "events": cobrowse.count(b"\n"),
                    "bytes": len(cobrowse),
                    "started_at": datetime.now(UTC).isoformat(),
                    "truncated": False,
                },
            )
    await cases.move(case.public_id, CaseState.CLOSED, ended_by="advisor")
    return case.public_id


async def events(world: World, action: str) -> int:
    async with world.app[DB].session() as s:
        query = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        return int(await s.scalar(query) or 0)


# ---- clients ----------------------------------------------------------------------------------

ROLES = ("advisor", "supervisor", "admin")


@pytest.fixture
async def staffed(world: World) -> World:
    """The world plus a supervisor, an admin and a second auditor."""
    db = world.app[DB]
    await create_staff(db, "supervisor1", "Supervisor Li", ADVISOR_PASSWORD, "supervisor")
    await create_staff(db, "admin1", "Admin Sun", ADVISOR_PASSWORD, "admin")
    await create_staff(db, "auditor2", "Auditor Qian", ADVISOR_PASSWORD, "auditor")
    return world


async def as_staff(world: World, username: str) -> Client:
    client = await world.make_client()
    await login(client, username)
    return client


async def csrf(client: Client) -> str:
    """The CSRF token of the client's session (the login form shows it for any session)."""
    return csrf_of(await (await client.get("/staff/login")).text())


async def post_verdict(client: Client, public_id: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, str) else json.dumps(body)
    resp = await client.post(
        f"/api/audit/cases/{public_id}/verdict",
        data=data,
        headers={"Content-Type": "application/json", "X-CSRF-Token": await csrf(client)},
    )
    return resp.status, await resp.json()


# ---- who gets in ------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/audit"),
    ("GET", "/audit/cases/{id}"),
    ("GET", "/audit/cases/{id}/recordings/customer"),
    ("POST", "/api/audit/cases/{id}/verdict"),
    ("GET", "/audit/cases/{id}/export.zip"),
    ("GET", "/audit/cases/{id}/cobrowse/{stream}"),
]
# A stored co-browse stream: rrweb events as JSON lines (a meta and a custom event).
STREAM = (
    b'{"type":4,"data":{"href":"http://127.0.0.1/call","width":1280,"height":800},"timestamp":1}\n'
    b'{"type":5,"data":{"tag":"note","payload":{}},"timestamp":2}\n'
)


def refused(status: int, location: str) -> bool:
    """Refused as staff pages refuse: 401/403, or sent to the staff login."""
    return status in (401, 403) or (status in (302, 303) and location.startswith("/staff/login"))


async def request(client: Client, method: str, path: str) -> tuple[int, str]:
    headers: dict[str, str] = {}
    data = None
    if method == "POST":
        # With the session's CSRF token (an anonymous one is made): the role check answers.
        headers = {"Content-Type": "application/json", "X-CSRF-Token": await csrf(client)}
        data = json.dumps({"verdict": "confirm", "comment": ""})
    resp = await client.request(method, path, data=data, headers=headers, allow_redirects=False)
    await resp.read()
    return resp.status, resp.headers.get("Location", "")


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_only_auditors_get_the_audit_routes(staffed: World, method: str, route: str) -> None:
    world = staffed
    public_id = await closed_case(
        world, {"customer": Side(make_webm((200, 30, 30), 1), 0, 1000)}, cobrowse=STREAM
    )
    path = route.format(id=public_id, stream=hashlib.sha256(STREAM).hexdigest())
    anonymous = await world.make_client()
    customer = await world.make_client()
    await identify(customer, world.grace)
    others = {"anonymous": anonymous, "customer": customer}
    for role in ROLES:
        others[role] = await as_staff(world, f"{role}1")
    for who, client in others.items():
        status, location = await request(client, method, path)
        assert refused(status, location), f"{who} got {status} from {method} {path}"
    auditor = await as_staff(world, "auditor1")
    status, location = await request(auditor, method, path)
    assert status in (200, 206), f"the auditor got {status} {location} from {method} {path}"


async def test_refusals_of_media_and_api_routes_are_json(world: World) -> None:
    public_id = await closed_case(world, {})
    anonymous = await world.make_client()
    resp = await anonymous.get(f"/audit/cases/{public_id}/recordings/customer")
    assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    advisor = await as_staff(world, "advisor1")
    resp = await advisor.get(f"/audit/cases/{public_id}/recordings/customer")
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    status, body = await post_verdict(advisor, public_id, {"verdict": "confirm"})
    assert status == 403 and body["error"] == "forbidden"


# ---- recordings -------------------------------------------------------------------------------


async def test_recordings_answer_byte_ranges(staffed: World) -> None:
    world = staffed
    data = os.urandom(2 * 1024 * 1024 + 12345)  # more than two of the 1 MiB pieces sent
    public_id = await closed_case(world, {"customer": Side(data, 0, 3000)})
    auditor = await as_staff(world, "auditor1")
    url = f"/audit/cases/{public_id}/recordings/customer"
    size = len(data)
    before = await events(world, "audit.recording_viewed")

    whole = await auditor.get(url)
    assert whole.status == 200 and await whole.read() == data
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Type"] == "video/webm"
    assert whole.headers["Cache-Control"] == "private, no-store"
    assert int(whole.headers["Content-Length"]) == size

    first = await auditor.get(url, headers={"Range": "bytes=0-99"})
    assert first.status == 206 and await first.read() == data[:100]
    assert first.headers["Content-Range"] == f"bytes 0-99/{size}"
    assert first.headers["Accept-Ranges"] == "bytes"

    rest = await auditor.get(url, headers={"Range": "bytes=1048570-"})
    assert rest.status == 206 and await rest.read() == data[1048570:]
    assert rest.headers["Content-Range"] == f"bytes 1048570-{size - 1}/{size}"

    beyond = await auditor.get(url, headers={"Range": f"bytes={size - 10}-{size + 500}"})
    assert beyond.status == 206 and await beyond.read() == data[-10:]

    suffix = await auditor.get(url, headers={"Range": "bytes=-500"})
    assert suffix.status == 206 and await suffix.read() == data[-500:]
    assert suffix.headers["Content-Range"] == f"bytes {size - 500}-{size - 1}/{size}"

    past = await auditor.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status == 416 and past.headers["Content-Range"] == f"bytes */{size}"

    # One playback is one event, however many ranges the browser asks for.
    assert await events(world, "audit.recording_viewed") == before + 1
    # Issue 12: a view that never asks for byte 0 used to escape the log.
    other = await as_staff(world, "auditor2")
    tail = await other.get(url, headers={"Range": "bytes=1-"})
    assert tail.status == 206 and await tail.read() == data[1:]
    assert await events(world, "audit.recording_viewed") == before + 2


async def test_a_missing_or_deleted_recording_is_said_so(world: World) -> None:
    public_id = await closed_case(world, {"customer": Side(b"webm" * 100, 0, 1000)})
    auditor = await as_staff(world, "auditor1")
    resp = await auditor.get(f"/audit/cases/{public_id}/recordings/advisor")
    assert resp.status == 404 and (await resp.json())["error"] == "no_recording"
    assert (await auditor.get(f"/audit/cases/{public_id}/recordings/nobody")).status == 404
    assert (await auditor.get("/audit/cases/nope/recordings/customer")).status == 404
    async with world.app[DB].session() as s, s.begin():
        await s.execute(update(Recording).values(deleted_at=datetime.now(UTC)))
    resp = await auditor.get(f"/audit/cases/{public_id}/recordings/customer")
    assert resp.status == 410 and (await resp.json())["error"] == "recording_deleted"


# ---- verdicts ---------------------------------------------------------------------------------


async def test_one_auditor_confirms(world: World) -> None:
    public_id = await closed_case(world, {})
    auditor = await as_staff(world, "auditor1")
    assert await post_verdict(auditor, public_id, {"verdict": "confirm"}) == (
        200,
        {"state": "confirmed"},
    )
    page = await (await auditor.get(f"/audit/cases/{public_id}")).text()
    assert 'id="decide-blocked"' in page and 'id="verdict-form"' not in page
    assert 'data-state="confirmed"' in page and 'class="verdict-row"' in page
    status, body = await post_verdict(auditor, public_id, {"verdict": "confirm"})
    assert status == 409 and body["error"] == "already_confirmed"


async def test_a_flag_needs_a_comment_and_a_second_auditor(staffed: World) -> None:
    world = staffed
    upheld, cleared = await closed_case(world, {}), await closed_case(world, {})
    first = await as_staff(world, "auditor1")
    second = await as_staff(world, "auditor2")
    status, body = await post_verdict(first, upheld, {"verdict": "flag", "comment": "  "})
    assert status == 409 and body["error"] == "comment_required" and body["message"]
    for public_id in (upheld, cleared):
        status, body = await post_verdict(
            first, public_id, {"verdict": "flag", "comment": "the ID was not shown"}
        )
        assert (status, body) == (200, {"state": "second_review"})
    status, body = await post_verdict(first, upheld, {"verdict": "flag", "comment": "again"})
    assert status == 409 and body["error"] == "second_auditor_required"
    page = await (await first.get(f"/audit/cases/{upheld}")).text()
    assert 'id="decide-blocked"' in page
    page = await (await second.get(f"/audit/cases/{upheld}")).text()
    assert 'id="verdict-form"' in page
    status, body = await post_verdict(second, upheld, {"verdict": "flag", "comment": "agreed"})
    assert (status, body) == (200, {"state": "upheld"})
    status, body = await post_verdict(second, cleared, {"verdict": "confirm", "comment": ""})
    assert (status, body) == (200, {"state": "cleared"})
    status, body = await post_verdict(second, cleared, {"verdict": "flag", "comment": "no"})
    assert status == 409 and body["error"] == "review_finished"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ("{not json", "bad_json", None),
        ('["confirm"]', "bad_json", None),
        ({"verdict": "maybe"}, "bad_verdict", "verdict"),
        ({"comment": "x"}, "bad_verdict", "verdict"),
        ({"verdict": "flag", "comment": 42}, "bad_comment", "comment"),
        ({"verdict": "flag", "comment": "x" * 2001}, "comment_too_long", "comment"),
    ],
)
async def test_a_bad_verdict_body_names_the_field(
    world: World, body: Any, code: str, field: str | None
) -> None:
    public_id = await closed_case(world, {})
    auditor = await as_staff(world, "auditor1")
    status, answer = await post_verdict(auditor, public_id, body)
    assert status == 400 and answer["error"] == code and answer["field"] == field


async def test_a_verdict_on_an_unknown_case_is_404(world: World) -> None:
    auditor = await as_staff(world, "auditor1")
    status, body = await post_verdict(auditor, "no-such-case", {"verdict": "confirm"})
    assert status == 404 and body["error"] == "no_case"


async def test_a_verdict_without_the_csrf_header_is_refused(world: World) -> None:
    public_id = await closed_case(world, {})
    auditor = await as_staff(world, "auditor1")
    resp = await auditor.post(
        f"/api/audit/cases/{public_id}/verdict", json={"verdict": "confirm", "comment": ""}
    )
    assert resp.status == 403 and (await resp.json())["error"] == "csrf"


# ---- the search -------------------------------------------------------------------------------


def case_ids(html: str) -> list[str]:
    return re.findall(r'class="audit-row" data-case-id="([^"]+)"', html)


async def test_the_search_filters_closed_cases(world: World) -> None:
    pin = await closed_case(world, {}, service="pin_change")
    loss = await closed_case(world, {}, service="card_loss", customer="Grace Hopper")
    auditor = await as_staff(world, "auditor1")
    await post_verdict(auditor, loss, {"verdict": "flag", "comment": "check the card"})

    everything = await auditor.get("/audit")
    html = await everything.text()
    assert everything.status == 200 and set(case_ids(html)) == {pin, loss}
    assert 'id="nav-audit"' in html and 'id="audit-filter"' in html
    assert case_ids(await (await auditor.get("/audit?service=card_loss")).text()) == [loss]
    assert case_ids(await (await auditor.get("/audit?state=second_review")).text()) == [loss]
    assert case_ids(await (await auditor.get("/audit?state=unreviewed")).text()) == [pin]
    advisor = await staff_id(world, "advisor1")
    by_advisor = await (await auditor.get(f"/audit?advisor={advisor}")).text()
    assert set(case_ids(by_advisor)) == {pin, loss}
    assert f'<option value="{advisor}" selected>' in by_advisor
    today = datetime.now(UTC).date()
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert case_ids(await (await auditor.get(f"/audit?date_from={tomorrow}")).text()) == []
    within = await (await auditor.get(f"/audit?date_from={today}&date_to={today}")).text()
    assert set(case_ids(within)) == {pin, loss}
    nothing = await (await auditor.get("/audit?outcome=passed")).text()
    assert case_ids(nothing) == [] and 'id="audit-empty"' in nothing
    assert await events(world, "audit.searched") >= 7


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("date_from=2026-13-01", "date_from"),
        ("date_from=2026-05-02&date_to=2026-05-01", "date_to"),
        ("service=mortgage", "service"),
        ("state=whatever", "state"),
        ("advisor=abc", "advisor"),
        ("page=0", "page"),
    ],
)
async def test_a_bad_filter_is_shown_next_to_its_field(
    world: World, query: str, field: str
) -> None:
    auditor = await as_staff(world, "auditor1")
    resp = await auditor.get(f"/audit?{query}")
    html = await resp.text()
    assert resp.status == 400
    assert f'id="filter-{field}-error"' in html and 'role="alert"' in html
    if field != "page":
        assert f'aria-describedby="filter-{field}-error"' in html


# Issue 12: each of these answered 500.
ANSWERED_500 = [
    ("page=²", "page"),
    ("advisor=²", "advisor"),
    ("page=" + "9" * 5000, "page"),
    ("advisor=99999999999999999999", "advisor"),
    ("date_to=9999-12-31", "date_to"),
]


@pytest.mark.parametrize(("query", "field"), ANSWERED_500)
async def test_a_filter_that_answered_500_is_a_400_beside_its_field(
    world: World, query: str, field: str
) -> None:
    auditor = await as_staff(world, "auditor1")
    resp = await auditor.get(f"/audit?{query}")
    assert resp.status == 400 and resp.content_type == "text/html"
    assert f'id="filter-{field}-error"' in await resp.text()


@pytest.mark.parametrize(("query", "field"), ANSWERED_500)
async def test_asked_for_json_a_bad_filter_is_a_json_400_naming_the_field(
    world: World, query: str, field: str
) -> None:
    auditor = await as_staff(world, "auditor1")
    resp = await auditor.get(f"/audit?{query}", headers={"Accept": "application/json"})
    assert resp.status == 400 and resp.content_type == "application/json"
    body = await resp.json()
    assert body["field"] == field and body["error"] in {"bad_number", "out_of_range"}
    assert body["message"].startswith(f"{field}: ")


# ---- the case page ----------------------------------------------------------------------------


async def test_the_case_page_shows_both_recordings_the_timeline_and_the_chat(
    world: World,
) -> None:
    sides = {
        "customer": Side(make_webm((200, 30, 30), 1), 0, 1000),
        "advisor": Side(make_webm((30, 30, 200), 1), 400, 1000),
    }
    public_id = await closed_case(world, sides, chat=("hello there",))
    auditor = await as_staff(world, "auditor1")
    resp = await auditor.get(f"/audit/cases/{public_id}")
    html = await resp.text()
    assert resp.status == 200
    for side in ("customer", "advisor"):
        assert f'id="video-{side}" preload="metadata"' in html
        assert f'src="/audit/cases/{public_id}/recordings/{side}"' in html
    assert '"totalMs": 1400' in html and '"offsetMs": 400' in html
    assert 'class="timeline-seek' in html and "Call started" in html
    assert "hello there" in html and "Ada Lovelace" in html
    assert f'href="/audit/cases/{public_id}/export.zip"' in html
    assert 'id="verdict-form"' in html and 'id="verdict-error"' in html
    assert world.ada.id_number not in html, "the ID number is shown masked"
    assert 'src="/static/js/audit_case.js"' in html and "<script>" not in html
    assert (await auditor.get("/audit/cases/nope")).status == 404


async def test_the_auditor_gets_the_stored_co_browse_stream_of_the_case(world: World) -> None:
    public_id = await closed_case(world, {}, cobrowse=STREAM)
    key = hashlib.sha256(STREAM).hexdigest()
    auditor = await as_staff(world, "auditor1")
    page = await (await auditor.get(f"/audit/cases/{public_id}")).text()
    assert f'data-url="/audit/cases/{public_id}/cobrowse/{key}"' in page
    resp = await auditor.get(f"/audit/cases/{public_id}/cobrowse/{key}")
    assert resp.status == 200 and resp.content_type == "application/x-ndjson"
    assert await resp.read() == STREAM
    assert await events(world, "audit.cobrowse_viewed") == 1
    # Only streams of this case: another hash, or a stream of another case, is not found.
    other = await closed_case(world, {}, cobrowse=STREAM + b"\n")
    other_key = hashlib.sha256(STREAM + b"\n").hexdigest()
    for path in (
        f"/audit/cases/{public_id}/cobrowse/{'0' * 64}",
        f"/audit/cases/{public_id}/cobrowse/{other_key}",
    ):
        resp = await auditor.get(path)
        assert resp.status == 404 and (await resp.json())["error"] == "no_stream", path
    assert (await auditor.get(f"/audit/cases/{other}/cobrowse/{other_key}")).status == 200
