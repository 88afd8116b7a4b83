"""asyncio's streams as the peer of twill's (tests/stream_peers.rs).

    python stream_peer.py client PORT   # talks to a twill echo server
    python stream_peer.py server        # a line server for a twill client

Standard library only. Prints what the test waits for, and exits non-zero
(with a traceback) if anything is not as expected.
"""

import asyncio
import sys


async def client(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    writer.write(b"hello\n")
    await writer.drain()
    assert await reader.readline() == b"hello\n"

    # More than twill's reader keeps (64 KiB) and more than the socket
    # buffers hold, sent while the echo comes back, then our EOF: the
    # server echoes everything, then closes.
    blob = bytes(i % 251 for i in range(4 << 20)) + b"tail"

    async def send() -> None:
        for start in range(0, len(blob), 65536):
            writer.write(blob[start : start + 65536])
            await writer.drain()
        writer.write_eof()

    sending = asyncio.create_task(send())
    echoed = await reader.read(-1)
    await sending
    assert echoed == blob, f"echo of {len(echoed)} bytes differs from the {len(blob)} sent"
    writer.close()
    await writer.wait_closed()
    print("client ok", flush=True)


async def server() -> None:
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            # The client's EOF: a last line, then our close.
            writer.write(b"bye\n")
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            done.set()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await asyncio.wait_for(done.wait(), 20)
    listening.close()
    await listening.wait_closed()
    print("server ok", flush=True)


def main() -> None:
    mode = sys.argv[1]
    if mode == "client":
        asyncio.run(asyncio.wait_for(client(int(sys.argv[2])), 20))
    elif mode == "server":
        asyncio.run(server())
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
