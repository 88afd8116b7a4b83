"""The Python `websockets` peer of tests/websocket_peers.rs.

    python websocket_peer.py client PORT         talks to a twill server
    python websocket_peer.py client-closed PORT  asks the twill server to close
    python websocket_peer.py server              an echo server for a twill client

Each prints one line per checked step ("ok text", "closed 4000 client done")
and gives up after 30 s. The server prints "PORT N" once listening and exits
after its first connection ends.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

LIMIT = 30
MAX_SIZE = 4 * 1024 * 1024
BIG = bytes(range(256)) * 4096  # 1 MiB


def say(line):
    print(line, flush=True)


async def client(port):
    async with connect(f"ws://127.0.0.1:{port}/echo", max_size=MAX_SIZE) as ws:
        await ws.send("hello, twill")
        assert await ws.recv() == "hello, twill"
        say("ok text")
        await ws.send(b"\x00\x01\xfe\xff")
        assert await ws.recv() == b"\x00\x01\xfe\xff"
        say("ok binary")
        # An iterable is sent as one fragmented message.
        await ws.send(["frag", "men", "ted \u00e9"])
        assert await ws.recv() == "fragmented \u00e9"
        say("ok fragmented")
        await ws.send(BIG)
        assert await ws.recv() == BIG
        say("ok large")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, LIMIT)
        say("ok pong")
        await ws.close(4000, "client done")
        say(f"closed {ws.close_code} {ws.close_reason}")


async def client_closed(port):
    async with connect(f"ws://127.0.0.1:{port}/echo", max_size=MAX_SIZE) as ws:
        await ws.send("close 4001 server done")
        await ws.wait_closed()
        say(f"closed {ws.close_code} {ws.close_reason}")


async def server():
    finished = asyncio.get_running_loop().create_future()

    async def echo(ws):
        try:
            async for message in ws:
                if message == "fragment me":
                    await ws.send(["frag", "ment", "ed"])
                elif isinstance(message, str) and message.startswith("close "):
                    _, code, reason = message.split(" ", 2)
                    await ws.close(int(code), reason)
                else:
                    await ws.send(message)
        finally:
            say(f"closed {ws.close_code} {ws.close_reason}")
            if not finished.done():
                finished.set_result(None)

    async with serve(echo, "127.0.0.1", 0, max_size=MAX_SIZE) as running:
        port = running.sockets[0].getsockname()[1]
        say(f"PORT {port}")
        await finished


def main():
    mode = sys.argv[1]
    if mode == "client":
        run = client(int(sys.argv[2]))
    elif mode == "client-closed":
        run = client_closed(int(sys.argv[2]))
    elif mode == "server":
        run = server()
    else:
        raise SystemExit(f"unknown mode {mode}")
    asyncio.run(asyncio.wait_for(run, LIMIT))


if __name__ == "__main__":
    main()
