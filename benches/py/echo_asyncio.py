"""Echo server on asyncio's Protocol API, the baseline for asyncio and uvloop.

    python echo_asyncio.py [127.0.0.1:0] [--uvloop]

``data_received`` writes the data back to the transport, the shape of the
asyncio documentation's echo server, with TCP_NODELAY (asyncio sets it on
TCP sockets by default). ``--uvloop`` runs the same protocol on uvloop.
Prints ``listening on HOST:PORT`` to stderr when ready; runs until killed.
"""

import asyncio
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def serve(host, port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, port, backlog=1024)
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
