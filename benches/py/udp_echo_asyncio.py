"""UDP echo server on asyncio's DatagramProtocol, the baseline for asyncio
and uvloop in udp_bench.

    python udp_echo_asyncio.py [127.0.0.1:0] [--uvloop]

``datagram_received`` sends each datagram back to its sender with
``transport.sendto(data, addr)``, the shape of the asyncio documentation's
UDP echo server. ``--uvloop`` runs the same protocol on uvloop. Prints
``listening on HOST:PORT`` to stderr when bound; runs until killed.
"""

import asyncio
import sys


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def serve(host, port):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, port))
    bound = transport.get_extra_info("sockname")
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
