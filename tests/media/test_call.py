"""CallMedia and CallManager with real loopback peers standing for the two browsers."""

from __future__ import annotations

import asyncio

import pytest

from media.call import CallManager, CallMedia, Side
from media.errors import BadOffer, CallClosed, CallExists, TooManyCalls
from tests.media.peers import BLUE, GREEN, RED, ClientPeer, close_to, mean_rgb

TIMEOUT = 10


async def join(call: CallMedia, side: Side, peer: ClientPeer) -> None:
    """Negotiate ``peer`` as ``side`` of ``call``; the server offers exactly 127.0.0.1."""
    answer = await call.answer(side, await peer.offer())
    candidates = [line.split()[4] for line in answer.splitlines() if line.startswith("a=cand")]
    assert candidates and set(candidates) == {"127.0.0.1"}
    await peer.accept(answer)


async def connected_pair(
    manager: CallManager, clients: list[ClientPeer], states: list[tuple[Side, str]]
) -> tuple[CallMedia, ClientPeer, ClientPeer]:
    """A call with a red customer and a blue advisor (the advisor joins later)."""
    call = manager.open("call-1", on_state=lambda side, state: states.append((side, state)))
    customer, advisor = ClientPeer(RED), ClientPeer(BLUE)
    clients.extend([customer, advisor])
    await join(call, "customer", customer)
    await asyncio.sleep(0.3)  # the customer's media flows before anyone receives it
    await join(call, "advisor", advisor)
    return call, customer, advisor


async def test_media_is_forwarded_both_ways(
    manager: CallManager, clients: list[ClientPeer]
) -> None:
    states: list[tuple[Side, str]] = []
    call, customer, advisor = await connected_pair(manager, clients, states)
    async with asyncio.timeout(TIMEOUT):
        await (await advisor.received("video")).wait_for_colour(RED)
        await (await customer.received("video")).wait_for_colour(BLUE)
        await advisor.received("audio")
        await customer.received("audio")
    assert ("customer", "connected") in states and ("advisor", "connected") in states
    stats = call.stats()
    assert stats["customer_to_advisor"]["video"] > 0 and stats["advisor_to_customer"]["audio"] > 0
    tapped = call.latest_customer_frame()
    assert tapped is not None and close_to(mean_rgb(tapped), RED)


async def test_reoffer_replaces_the_source(manager: CallManager, clients: list[ClientPeer]) -> None:
    states: list[tuple[Side, str]] = []
    call, customer, advisor = await connected_pair(manager, clients, states)
    async with asyncio.timeout(TIMEOUT):
        await (await advisor.received("video")).wait_for_colour(RED)
    reloaded = ClientPeer(GREEN)  # the customer reloads the page: a new peer, a new offer
    clients.append(reloaded)
    await customer.close()
    await join(call, "customer", reloaded)
    async with asyncio.timeout(TIMEOUT):
        await advisor.sinks["video"].wait_for_colour(GREEN)
        await (await reloaded.received("video")).wait_for_colour(BLUE)
    assert ("customer", "closed") not in states  # the replaced connection is not reported


async def test_close_ends_everything(manager: CallManager, clients: list[ClientPeer]) -> None:
    states: list[tuple[Side, str]] = []
    call, _, advisor = await connected_pair(manager, clients, states)
    async with asyncio.timeout(TIMEOUT):
        await (await advisor.received("video")).wait_for_colour(RED)
    await manager.close("call-1")
    await call.close()  # idempotent
    assert call.closed and manager.get("call-1") is None and len(manager) == 0
    assert {("customer", "closed"), ("advisor", "closed")} <= set(states)
    assert call.latest_customer_frame() is None
    with pytest.raises(CallClosed):
        await call.answer("customer", await ClientPeer(RED).offer())
    # the manager fixture fails the test if any task is still running


@pytest.mark.parametrize(
    "sdp",
    ["", "hello", "v=0\r\n", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video\r\n"],
)
async def test_garbage_is_a_bad_offer(manager: CallManager, sdp: str) -> None:
    call = manager.open("call-1")
    with pytest.raises(BadOffer):
        await call.answer("customer", sdp)


async def test_an_answer_is_not_an_offer(manager: CallManager, clients: list[ClientPeer]) -> None:
    connected = asyncio.Event()
    call = manager.open("call-1", on_state=lambda side, state: connected.set())
    peer = ClientPeer(RED)
    clients.append(peer)
    offer = await peer.offer()
    with pytest.raises(BadOffer):
        await call.answer("customer", offer.replace("a=setup:actpass", "a=setup:active"))
    await join(call, "customer", peer)  # the call still works after a bad offer
    # Closing while ICE completes can leave aioice 0.13's consent task running for ~30 s
    # (``Connection.connect`` starts it after ``close()``): wait for "connected" first.
    async with asyncio.timeout(TIMEOUT):
        await connected.wait()
    assert call.connection_state("customer") == "connected"


async def test_manager_bounds_and_ids(manager: CallManager) -> None:
    first = manager.open("a")
    with pytest.raises(CallExists):
        manager.open("a")
    manager.open("b")
    with pytest.raises(TooManyCalls):
        manager.open("c")
    assert manager.get("a") is first and sorted(manager) == ["a", "b"]
    await first.close()
    assert manager.get("a") is None
    manager.open("c")
    await manager.close("unknown")
    await manager.close_all()
    assert len(manager) == 0
