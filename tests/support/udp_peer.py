"""UDP peers for tests/udp_peers.rs, standard library only (Python 3.8+).

    udp_peer.py socket-client PORT    plain socket: text, an empty datagram
                                      and a 65,507-byte one, each echoed
    udp_peer.py asyncio-client PORT   loop.create_datagram_endpoint client:
                                      100 datagrams, every echo checked
    udp_peer.py asyncio-server        an asyncio echo server on 127.0.0.1:0;
                                      prints "listening on ADDR", ends on "bye"

Each prints "<mode> ok" and exits 0 on success; any failure raises (exit 1).
Every wait has a timeout.
"""

import asyncio
import socket
import sys

WAIT = 10.0


def socket_client(port):
    server = ("127.0.0.1", port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(WAIT)
    for payload in [b"hello from python", b"", bytes(range(256)) * 255 + b"x" * 227]:
        sock.sendto(payload, server)
        data, addr = sock.recvfrom(70000)
        assert addr == server, addr
        assert data == payload, (len(data), len(payload))
    print("socket-client ok", flush=True)


class Client(asyncio.DatagramProtocol):
    def __init__(self, count, done):
        self.count = count
        self.done = done
        self.received = []

    def connection_made(self, transport):
        for n in range(self.count):
            transport.sendto(b"datagram %d" % n)

    def datagram_received(self, data, addr):
        self.received.append(data)
        if len(self.received) == self.count and not self.done.done():
            self.done.set_result(self.received)

    def error_received(self, exc):
        if not self.done.done():
            self.done.set_exception(exc)


async def asyncio_client(port):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 100
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Client(count, done), remote_addr=("127.0.0.1", port)
    )
    try:
        received = await asyncio.wait_for(done, WAIT)
    finally:
        transport.close()
    assert sorted(received) == sorted(b"datagram %d" % n for n in range(count))
    print("asyncio-client ok", flush=True)


class EchoServer(asyncio.DatagramProtocol):
    def __init__(self, done):
        self.done = done

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data.upper(), addr)
        if data == b"bye" and not self.done.done():
            self.done.set_result(None)


async def asyncio_server():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: EchoServer(done), local_addr=("127.0.0.1", 0)
    )
    host, port = transport.get_extra_info("sockname")
    print("listening on %s:%d" % (host, port), flush=True)
    try:
        await asyncio.wait_for(done, WAIT)
    finally:
        transport.close()
    print("asyncio-server ok", flush=True)


def multicast_send(group, port, count):
    """Sends COUNT datagrams to GROUP:PORT out of the loopback interface,
    then "done"."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    for n in range(count):
        sock.sendto(b"python multicast %d" % n, (group, port))
    sock.sendto(b"done", (group, port))
    sock.close()
    print("multicast-send ok", flush=True)


def main():
    mode = sys.argv[1]
    if mode == "socket-client":
        socket_client(int(sys.argv[2]))
    elif mode == "asyncio-client":
        asyncio.run(asyncio_client(int(sys.argv[2])))
    elif mode == "asyncio-server":
        asyncio.run(asyncio_server())
    elif mode == "multicast-send":
        multicast_send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
