"""Hello-world HTTP server on aiohttp, the baseline for aiohttp.

    python http_aiohttp.py [127.0.0.1:0] [--uvloop]

An ``aiohttp.web.Application`` with one route, ``GET /``, whose handler
returns ``web.Response(text="Hello, World!")``: the shape of aiohttp's
documentation. aiohttp adds Content-Length, Date, Server and keep-alive,
and answers pipelined requests in order. The access log is off, as a
benchmark's would be. ``--uvloop`` runs the same application on uvloop
(reported under its own name). Prints ``listening on HOST:PORT`` to
stderr when ready; runs until killed.
"""

import asyncio
import sys

from aiohttp import web


async def hello(request):
    return web.Response(text="Hello, World!")


async def serve(host, port):
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    host, _, port = (args[0] if args else "127.0.0.1:0").rpartition(":")
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        uvloop.install()
    asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
