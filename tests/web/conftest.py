"""Fixtures for handler tests: the real app on a temporary SQLite file, with real data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from banking.core import NewCustomer
from banking.identity import luhn_check_digit, prc_id_check_char
from web.accounts import create_staff
from web.app import create_app
from web.keys import BANKING, DB
from web.settings import Settings

ADVISOR_PASSWORD = "advisor-test-password"


@dataclass(frozen=True)
class Person:
    """A customer's identification data as they would type it."""

    name: str
    id_number: str
    card_last4: str


def id_number(body17: str) -> str:
    """A valid PRC ID number from its first 17 characters."""
    return body17 + prc_id_check_char(body17)


def card_number(body: str) -> str:
    """A Luhn-valid card number."""
    return body + luhn_check_digit(body)


@pytest.fixture
def settings(tmp_path: Path, shared_data: Path) -> Settings:
    return make_settings(tmp_path, shared_data)


def make_settings(tmp_path: Path, shared_data: Path, **extra: str) -> Settings:
    """Test settings: loopback-only ICE, a short reconnect grace, three identify attempts."""
    return Settings.from_env(
        {
            "CLOUDBRANCH_DATA_DIR": str(tmp_path / "var"),
            "CLOUDBRANCH_ICE_LOOPBACK_ONLY": "1",
            "CLOUDBRANCH_IDENTIFY_ATTEMPTS": "3",
            "CLOUDBRANCH_SHARED_DATA": str(shared_data),
            "CLOUDBRANCH_DEFAULT_LANG": "en",
            "CLOUDBRANCH_RECONNECT_GRACE_SECONDS": "1",
            # The same test customers open case after case (tests/cases/test_limits.py tests
            # the bound).
            "CLOUDBRANCH_CASES_PER_CUSTOMER_HOUR": "1000",
            # The face engine's workers take seconds to start: only the tests that verify
            # turn them on (verification has tests of its own).
            "CLOUDBRANCH_FACE_WORKERS": "0",
            **extra,
        }
    )


async def _seed(app: web.Application, shared_data: Path) -> tuple[Person, Person]:
    photo = (shared_data / "identity/face_recognition/obama/obama.jpg").read_bytes()
    people = []
    for name, body17, card in (
        ("Ada Lovelace", "11010519491231002", "622202020011223"),
        ("Grace Hopper", "31010119850615004", "622202020055667"),
    ):
        number = card_number(card)
        await app[BANKING].add_customer(
            NewCustomer(name, id_number(body17), number, photo, "image/jpeg")
        )
        people.append(Person(name, id_number(body17), number[-4:]))
    await create_staff(app[DB], "advisor1", "Advisor Wang", ADVISOR_PASSWORD, "advisor")
    await create_staff(app[DB], "auditor1", "Auditor Zhao", ADVISOR_PASSWORD, "auditor")
    return people[0], people[1]


@dataclass
class World:
    """A running app with two customers and an advisor."""

    app: web.Application
    ada: Person
    grace: Person
    make_client: Callable[[], Awaitable[TestClient]]  # type: ignore[type-arg]
    server: TestServer


@pytest.fixture
async def world(settings: Settings, shared_data: Path) -> AsyncIterator[World]:
    async with running_world(settings, shared_data) as running:
        yield running


@asynccontextmanager
async def running_world(settings: Settings, shared_data: Path) -> AsyncIterator[World]:
    """The app served on loopback, seeded; clients are separate browsers."""
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    ada, grace = await _seed(app, shared_data)
    origin = str(server.make_url("/").origin())
    clients: list[TestClient] = []  # type: ignore[type-arg]

    async def make_client() -> TestClient:  # type: ignore[type-arg]
        # Each client is another browser: its own cookie jar. Like a browser, it keeps
        # Secure cookies on a loopback origin.
        jar = CookieJar(unsafe=True, treat_as_secure_origin=[origin])
        client = TestClient(server, cookie_jar=jar)
        await client.start_server()
        clients.append(client)
        return client

    yield World(app, ada, grace, make_client, server)
    for client in clients:
        await client.close()
    await server.close()


def csrf_of(html: str) -> str:
    """The CSRF token in a rendered form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "page has no CSRF field"
    return found.group(1)


async def identify(
    client: TestClient,
    person: Person,
    service: str = "pin_change",  # type: ignore[type-arg]
) -> tuple[int, str]:
    """Walk to the identify form and submit it; returns status and page text."""
    page = await client.get(f"/identify?service={service}")
    token = csrf_of(await page.text())
    resp = await client.post(
        "/identify",
        data={
            "csrf_token": token,
            "service": service,
            "name": person.name,
            "id_number": person.id_number,
            "card_last4": person.card_last4,
        },
        allow_redirects=False,
    )
    return resp.status, await resp.text()


async def consent(client: TestClient) -> None:  # type: ignore[type-arg]
    """Accept the recording consent."""
    page = await client.get("/consent")
    assert page.status == 200
    resp = await client.post(
        "/consent",
        data={"csrf_token": csrf_of(await page.text()), "accept": "on"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/device-check"


async def device_checked(client: TestClient, camera: str = "ok") -> int:  # type: ignore[type-arg]
    """Send the device check's findings (as the page does when the customer continues)."""
    page = await client.get("/device-check")
    resp = await client.post(
        "/device-check",
        data={
            "csrf_token": csrf_of(await page.text()),
            "camera": camera,
            "mic": "ok",
            "network": "ok",
        },
        allow_redirects=False,
    )
    return resp.status


async def login(client: TestClient, username: str = "advisor1") -> None:  # type: ignore[type-arg]
    """Log a staff member in."""
    page = await client.get("/staff/login")
    resp = await client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_of(await page.text()),
            "username": username,
            "password": ADVISOR_PASSWORD,
        },
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
