"""The benchmark's helpers: its accounts, its browser flow against the real app, its figures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import _media_clients as clients
import media_sessions as bench
import psutil
import pytest

from banking.identity import check_card_number, check_id_number
from tests.web.conftest import ADVISOR_PASSWORD, World, make_settings, running_world


def test_accounts_are_valid_and_distinct() -> None:
    customers = [bench.customer(i) for i in range(50)]
    for c in customers:
        assert check_id_number(c.id_number) == c.id_number
        assert check_card_number(c.card_number) == c.card_number
    assert len({c.id_number for c in customers}) == 50
    assert len({c.card_last4 for c in customers}) == 50
    assert len({c.name for c in customers}) == 50
    assert len({bench.advisor(i).username for i in range(50)}) == 50
    with pytest.raises(ValueError):
        bench.customer(1000)


def test_pair_spec_is_what_the_forms_ask_for() -> None:
    spec = bench.pair_spec(3, "pw")
    c = bench.customer(3)
    assert spec["customer"] == {
        "name": c.name,
        "id_number": c.id_number,
        "card_last4": c.card_last4,
    }
    assert spec["advisor"] == {"username": bench.advisor(3).username, "password": "pw"}


def test_server_env_keeps_the_callers_settings_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLOUDBRANCH_DATABASE_URL", "postgresql+asyncpg://elsewhere/db")
    env = bench.server_env(tmp_path / "data", tmp_path, max_calls=9)
    assert "CLOUDBRANCH_DATABASE_URL" not in env
    assert env["CLOUDBRANCH_HOST"] == "127.0.0.1"
    assert env["CLOUDBRANCH_ICE_LOOPBACK_ONLY"] == "1"
    assert env["CLOUDBRANCH_MAX_CALLS"] == "9"


def test_csrf_of() -> None:
    html = '<form><input type="hidden" name="csrf_token" value="abc-123_x"></form>'
    assert clients.csrf_of(html) == "abc-123_x"
    with pytest.raises(clients.FlowError):
        clients.csrf_of("<form></form>")


def test_rates_per_direction() -> None:
    before = [{"customer": {"video": 10, "audio": 20}, "advisor": {"video": 0, "audio": 0}}]
    after = [{"customer": {"video": 70, "audio": 120}, "advisor": {"video": 58, "audio": 100}}]
    assert clients.rates(before, after, 2.0) == [
        {
            "customer_to_advisor_video_fps": 29.0,
            "advisor_to_customer_video_fps": 30.0,
            "customer_to_advisor_audio_fps": 50.0,
            "advisor_to_customer_audio_fps": 50.0,
        }
    ]


@pytest.fixture
async def world(tmp_path: Path, shared_data: Path) -> AsyncIterator[World]:
    settings = make_settings(tmp_path, shared_data, CLOUDBRANCH_RECONNECT_GRACE_SECONDS="5")
    async with running_world(settings, shared_data) as running:
        yield running


async def test_browser_flow_against_the_real_app(world: World) -> None:
    """One session as the benchmark drives it: pages, queue, accept, media both ways, hang-up."""
    base = str(world.server.make_url("/").origin())
    pair = {
        "customer": {
            "name": world.ada.name,
            "id_number": world.ada.id_number,
            "card_last4": world.ada.card_last4,
        },
        "advisor": {"username": "advisor1", "password": ADVISOR_PASSWORD},
    }
    loops = await asyncio.gather(
        asyncio.to_thread(clients.encode_loop, 0), asyncio.to_thread(clients.encode_loop, 128)
    )
    session = clients.Session(
        clients.Side(clients.new_browser(base)), clients.Side(clients.new_browser(base))
    )
    try:
        await clients.open_session(session, base, pair, list(loops))
        await clients.wait_flowing([session])
        counts = clients.snapshot([session])[0]
        assert counts["customer"]["video"] > 0 and counts["advisor"]["video"] > 0
        await clients.hang_up(session)
    finally:
        await session.close()


async def test_a_wrong_identification_fails_loudly(world: World) -> None:
    base = str(world.server.make_url("/").origin())
    http = clients.new_browser(base)
    try:
        wrong = {"name": world.ada.name, "id_number": world.grace.id_number, "card_last4": "0000"}
        with pytest.raises(clients.FlowError, match="POST /identify: 400"):
            await clients.customer_pages(http, wrong)
    finally:
        await http.close()


async def test_summarise_splits_the_machine_load() -> None:
    before = bench.Window(at=100.0, server=10.0, clients=20.0, own=1.0, machine=50.0)
    after = bench.Window(at=110.0, server=16.0, clients=30.0, own=1.5, machine=80.0)
    session = {
        "customer_to_advisor_video_fps": 30.0,
        "advisor_to_customer_video_fps": 28.0,
        "customer_to_advisor_audio_fps": 50.0,
        "advisor_to_customer_audio_fps": 49.0,
    }
    rss = bench.RssSampler(psutil.Process())
    await rss.close()
    result = bench.summarise(2, before, after, [session, session], rss)
    assert result["server_cpu_cores_total"] == 0.6
    assert result["server_cpu_seconds_per_session_second"] == 0.3
    assert result["clients_cpu_cores_total"] == 1.0
    assert result["other_processes_cpu_cores"] == 1.35  # 30 - 6 - 10 - 0.5 CPU s over 10 s
    assert result["customer_to_advisor_video_fps"] == 30.0
    assert result["advisor_to_customer_audio_fps"] == 49.0
