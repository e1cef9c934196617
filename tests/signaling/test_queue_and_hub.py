"""The FIFO queue and the hub's bounded outbound queues."""

from __future__ import annotations

import asyncio

from signaling.config import SignalingConfig
from signaling.hub import CLOSE_TOO_SLOW, Hub
from signaling.messages import CobrowseEventsOut, Pong, QueueEntry
from signaling.queue import WaitingQueue


def entry(case_id: str) -> QueueEntry:
    return QueueEntry(
        case_id=case_id, customer_name=case_id, service="pin_change", waiting_since=""
    )


def test_queue_is_first_in_first_out_and_keeps_a_place_on_rejoin() -> None:
    queue = WaitingQueue(average_handle_seconds=240)
    for case_id in ("a", "b", "c"):
        assert queue.join(entry(case_id))
    assert not queue.join(entry("a"))
    assert [e.case_id for e in queue.entries()] == ["a", "b", "c"]
    assert queue.position("c") == 3
    assert queue.remove("b") is not None and queue.remove("b") is None
    assert queue.position("c") == 2 and queue.position("zzz") is None
    assert queue.estimated_wait(2, advisors=2) == 240
    assert queue.estimated_wait(1, advisors=0) == 240


async def test_messages_reach_every_connection_of_a_principal_in_order() -> None:
    hub = Hub(SignalingConfig())
    got: dict[str, list[str]] = {"one": [], "two": []}

    def sender(name: str):  # type: ignore[no-untyped-def]
        async def send(text: str) -> None:
            got[name].append(text)

        return send

    async def close(code: int, reason: str) -> None:
        return None

    one = hub.attach("advisor:1", sender("one"), close)
    two = hub.attach("advisor:1", sender("two"), close)
    assert hub.send("advisor:1", Pong()) == 2
    assert hub.send("advisor:2", Pong()) == 0
    await asyncio.sleep(0.01)
    assert got["one"] == got["two"] == ['{"v":1,"type":"pong"}']
    assert not hub.detach(one) and hub.detach(two)
    assert not hub.is_connected("advisor:1")
    await one.aclose()
    await two.aclose()


async def test_a_client_that_stops_reading_is_closed_not_buffered_forever() -> None:
    hub = Hub(SignalingConfig(outbound_queue_size=4))
    stalled = asyncio.Event()
    closed: list[int] = []

    async def send(text: str) -> None:
        await stalled.wait()  # never returns: the peer reads nothing

    async def close(code: int, reason: str) -> None:
        closed.append(code)

    conn = hub.attach("customer:x", send, close)
    delivered = [hub.send("customer:x", Pong()) for _ in range(10)]
    assert delivered == [1] * 4 + [0] * 6  # four fit; then the connection is given up
    await asyncio.sleep(0.01)
    assert closed == [CLOSE_TOO_SLOW]
    await conn.aclose()
    hub.detach(conn)


async def test_a_stalled_queue_is_bounded_in_bytes_not_only_in_messages() -> None:
    """Issue 12: 256 queued messages of 1 MiB each were 256 MiB held for one slow socket."""
    hub = Hub(SignalingConfig())  # 256 messages, 4 MiB
    stalled = asyncio.Event()
    closed: list[int] = []

    async def send(text: str) -> None:
        await stalled.wait()

    async def close(code: int, reason: str) -> None:
        closed.append(code)

    conn = hub.attach("advisor:1", send, close)
    batch = CobrowseEventsOut(events=[{"type": 2, "data": {"pad": "x" * 1_000_000}}])
    delivered = [hub.send("advisor:1", batch) for _ in range(6)]
    assert delivered == [1, 1, 1, 1, 0, 0]  # 4 MB fit in 4 MiB; the fifth closes the socket
    assert conn.queued_bytes <= 4 * 1024 * 1024
    await asyncio.sleep(0.01)
    assert closed == [CLOSE_TOO_SLOW]
    await conn.aclose()
    hub.detach(conn)


async def test_sent_messages_no_longer_count_towards_the_bytes() -> None:
    hub = Hub(SignalingConfig())
    sent: list[int] = []
    closed: list[int] = []

    async def send(text: str) -> None:
        sent.append(len(text))

    async def close(code: int, reason: str) -> None:
        closed.append(code)

    conn = hub.attach("advisor:1", send, close)
    batch = CobrowseEventsOut(events=[{"type": 2, "data": {"pad": "界" * 200_000}}])
    for _ in range(10):  # 6 MB in all, one message waiting at a time
        assert hub.send("advisor:1", batch) == 1
        await conn.flush()
    assert len(sent) == 10 and conn.queued_bytes == 0 and closed == []
    await conn.aclose()
    hub.detach(conn)
