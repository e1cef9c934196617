"""The server side of ``bench/media_sessions.py``: media.CallManager in its own process.

A minimal aiohttp app on 127.0.0.1 (never a production composition root):

* ``POST /calls/{call_id}/{side}/offer`` — body: the SDP offer; reply: the SDP answer
  (the call is opened on first use);
* ``GET /stats`` — ``CallMedia.stats()`` per call.

It prints ``READY <port>`` once listening and stops on SIGTERM/SIGINT, closing every call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from typing import get_args

from aiohttp import web

from media.call import CallManager, Side
from media.config import MediaConfig
from media.errors import BadOffer, MediaError

MANAGER = web.AppKey("manager", CallManager)


async def offer(request: web.Request) -> web.Response:
    """Answer one side's offer."""
    manager = request.app[MANAGER]
    call_id, side = request.match_info["call_id"], request.match_info["side"]
    if side not in get_args(Side):
        raise web.HTTPNotFound(text="unknown side")
    call = manager.get(call_id) or manager.open(call_id)
    try:
        answer = await call.answer(side, await request.text())  # type: ignore[arg-type]
    except BadOffer as err:
        raise web.HTTPBadRequest(text=str(err)) from err
    except MediaError as err:
        raise web.HTTPConflict(text=str(err)) from err
    return web.Response(text=answer, content_type="application/sdp")


async def stats(request: web.Request) -> web.Response:
    """Frame counters of every call."""
    manager = request.app[MANAGER]
    body = {call_id: call.stats() for call_id in manager if (call := manager.get(call_id))}
    return web.json_response(body)


def make_app(max_calls: int) -> web.Application:
    """The benchmark's media server app."""
    app = web.Application()
    app[MANAGER] = CallManager(MediaConfig(ice_loopback_only=True, max_calls=max_calls))
    app.router.add_post("/calls/{call_id}/{side}/offer", offer)
    app.router.add_get("/stats", stats)

    async def close_calls(app: web.Application) -> None:
        await app[MANAGER].close_all()

    app.on_shutdown.append(close_calls)
    return app


async def serve(max_calls: int) -> None:
    """Serve on an ephemeral 127.0.0.1 port until SIGTERM or SIGINT."""
    runner = web.AppRunner(make_app(max_calls))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"ready": True, "port": port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await runner.cleanup()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-calls", type=int, default=64)
    asyncio.run(serve(parser.parse_args().max_calls))


if __name__ == "__main__":
    main()
