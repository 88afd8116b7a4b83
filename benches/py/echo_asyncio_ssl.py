"""TLS echo server on asyncio's Protocol API with the standard library's
ssl (OpenSSL), the baseline for asyncio and uvloop in ``tls_bench``.

    python echo_asyncio_ssl.py ADDR CERT KEY [--bulk] [--plain] [--uvloop]

The protocol is ``echo_asyncio.py``'s: ``data_received`` writes the data
back to the transport. TLS is asyncio's own, ``create_server(ssl=...)``
with a server context holding the certificate chain ``CERT`` and key
``KEY`` (PEM files), OpenSSL's defaults otherwise.

``--bulk`` sends instead: once the handshake completes (asyncio calls
``connection_made`` then), 16 KiB writes for as long as the connection
lasts, each an 8-byte big-endian count and 16,376 fixed bytes (byte ``j``
is ``(131 j + j // 256) mod 256``), paced by ``pause_writing`` and
``resume_writing``. ``--plain`` runs without TLS. ``--uvloop`` runs the
same on uvloop. Prints ``listening on HOST:PORT`` to stderr when ready;
runs until killed.
"""

import asyncio
import ssl
import struct
import sys

CHUNK = 16 * 1024
COUNT = 8
BODY = bytes(((j * 131) + (j >> 8)) & 0xFF for j in range(CHUNK - COUNT))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Bulk(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.paused = False
        self.next = 0
        self.fill()

    def data_received(self, data):
        pass

    def fill(self):
        pack = struct.pack
        while not self.paused and not self.transport.is_closing():
            self.transport.write(pack(">Q", self.next) + BODY)
            self.next += 1

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.fill()

    def connection_lost(self, exc):
        self.paused = True


async def serve(host, port, protocol, context):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, host, port, backlog=1024, ssl=context)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    await server.serve_forever()


def main():
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    unknown = set(flags) - {"--bulk", "--plain", "--uvloop"}
    if len(args) != 3 or unknown:
        sys.exit("usage: echo_asyncio_ssl.py ADDR CERT KEY [--bulk] [--plain] [--uvloop]")
    addr, cert, key = args
    host, _, port = addr.rpartition(":")
    context = None
    if "--plain" not in flags:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    if "--uvloop" in flags:
        import uvloop

        uvloop.install()
    protocol = Bulk if "--bulk" in flags else Echo
    asyncio.run(serve(host, int(port), protocol, context))


if __name__ == "__main__":
    main()
