"""Echo server on asyncio's streams, the baseline for twill's streams echo.

    python echo_asyncio_streams.py [127.0.0.1:0] [--uvloop]

``asyncio.start_server`` runs a coroutine per connection that reads what
has arrived (``await reader.read(65536)``), writes it back
(``writer.write``) and waits while the transport's write buffer is over its
high watermark (``await writer.drain()``): the shape of the asyncio
documentation's streams echo server, and of twill's ``async_echo``
example. asyncio sets TCP_NODELAY on TCP sockets by default. ``--uvloop``
runs the same code on uvloop. Prints ``listening on HOST:PORT`` to stderr
when ready; runs until killed.
"""

import asyncio
import sys


async def echo(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(host, port):
    server = await asyncio.start_server(echo, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    await server.serve_forever()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    host, _, port = (args[0] if args else "127.0.0.1:0").rpartition(":")
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        uvloop.install()
    asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
