"""A Twisted peer for twill's wire-compatibility tests (twisted_wire.rs).

    python twisted_peer.py server FRAMING        # prints "PORT <n>", serves one connection
    python twisted_peer.py client FRAMING HOST:PORT

FRAMING is one of: line, int32, int16, int8, netstring. Both sides use
Twisted's own classes from twisted.protocols.basic with their defaults.

The server answers each message m with swapcase(m); in line mode a line
"raw N" switches to raw mode for N bytes, answered with the line
"RAW <hex of the bytes>". The client sends every message of its framing at
once, checks the answers, prints "OK" (exit 0) or "FAIL ..." (exit 1), and
closes. The server exits 0 when its connection closes, 1 if the input was
malformed. Either gives up after 30 seconds (exit 2). Only 127.0.0.1.
"""

import sys

from twisted.internet import protocol, reactor
from twisted.protocols import basic

TIMEOUT = 30.0
EXIT = {"code": None}


def finish(code, message=None):
    """Ends the run with `code`; the first call decides."""
    if EXIT["code"] is not None:
        return
    if message:
        print(message, flush=True)
    EXIT["code"] = code
    reactor.stop()


def messages(framing):
    """What the client sends: (kind, payload), kind "msg" or "raw"."""
    if framing == "line":
        return [
            ("msg", b"hello"),
            ("msg", b""),
            ("msg", b"MiXeD case 123"),
            ("msg", b"lone\rcr and\nlf"),
            ("raw", b"ab\r\ncd\r\nef"),
            ("msg", b"after raw"),
            ("msg", b"x" * basic.LineReceiver.MAX_LENGTH),
            ("msg", b"last"),
        ]
    every_byte = bytes(range(256))
    if framing == "int8":
        return [("msg", b""), ("msg", b"hello"), ("msg", every_byte[:255])]
    big = {"int32": 99999, "int16": 65535, "netstring": 99999}[framing]
    return [
        ("msg", b""),
        ("msg", b"hello"),
        ("msg", b"1:a,"),
        ("msg", every_byte),
        ("msg", b"q" * big),
    ]


def answer(kind, payload):
    if kind == "raw":
        return b"RAW " + payload.hex().encode()
    return payload.swapcase()


STRING_CLASSES = {
    "int32": basic.Int32StringReceiver,
    "int16": basic.Int16StringReceiver,
    "int8": basic.Int8StringReceiver,
    "netstring": basic.NetstringReceiver,
}


def server_protocol(framing):
    if framing == "line":

        class Server(basic.LineReceiver):
            raw_left = 0
            raw = b""

            def lineReceived(self, line):
                if line.startswith(b"raw "):
                    self.raw_left = int(line[4:])
                    self.raw = b""
                    self.setRawMode()
                else:
                    self.sendLine(answer("msg", line))

            def rawDataReceived(self, data):
                take = data[: self.raw_left]
                self.raw += take
                self.raw_left -= len(take)
                if self.raw_left == 0:
                    self.sendLine(answer("raw", self.raw))
                    self.setLineMode(data[len(take) :])

            def lineLengthExceeded(self, line):
                finish(1, "FAIL line too long: %d bytes" % len(line))

            def connectionLost(self, reason):
                finish(0)

        return Server()

    class StringServer(STRING_CLASSES[framing]):
        def stringReceived(self, string):
            self.sendString(answer("msg", string))

        def lengthLimitExceeded(self, length):
            finish(1, "FAIL length limit exceeded: %d" % length)

        def connectionLost(self, reason):
            if getattr(self, "brokenPeer", 0):
                finish(1, "FAIL malformed netstring")
            else:
                finish(0)

    return StringServer()


def client_protocol(framing):
    sent = messages(framing)
    expected = [answer(kind, payload) for kind, payload in sent]

    class Checker:
        def __init__(self):
            self.received = []

        def got(self, proto, message):
            self.received.append(message)
            n = len(self.received)
            if message != expected[n - 1]:
                finish(
                    1,
                    "FAIL answer %d: %r... (%d bytes), expected %r... (%d bytes)"
                    % (n, message[:40], len(message), expected[n - 1][:40], len(expected[n - 1])),
                )
                proto.transport.loseConnection()
            elif n == len(expected):
                finish(0, "OK %d answers" % n)
                proto.transport.loseConnection()

    checker = Checker()

    if framing == "line":

        class Client(basic.LineReceiver):
            def connectionMade(self):
                out = []
                for kind, payload in sent:
                    if kind == "raw":
                        out.append(b"raw %d\r\n" % len(payload) + payload)
                    else:
                        out.append(payload + self.delimiter)
                self.transport.write(b"".join(out))

            def lineReceived(self, line):
                checker.got(self, line)

            def lineLengthExceeded(self, line):
                finish(1, "FAIL answer too long: %d bytes" % len(line))

        return Client()

    class StringClient(STRING_CLASSES[framing]):
        def connectionMade(self):
            for _, payload in sent:
                self.sendString(payload)

        def stringReceived(self, string):
            checker.got(self, string)

        def lengthLimitExceeded(self, length):
            finish(1, "FAIL answer length limit exceeded: %d" % length)

    return StringClient()


class OneShot(protocol.ClientFactory):
    def __init__(self, framing):
        self.framing = framing

    def buildProtocol(self, addr):
        return client_protocol(self.framing)

    def clientConnectionFailed(self, connector, reason):
        finish(1, "FAIL connect: %s" % reason.getErrorMessage())

    def clientConnectionLost(self, connector, reason):
        finish(1, "FAIL closed early: %s" % reason.getErrorMessage())


class Serve(protocol.Factory):
    def __init__(self, framing):
        self.framing = framing

    def buildProtocol(self, addr):
        return server_protocol(self.framing)


def main(argv):
    if len(argv) < 3 or argv[1] not in ("server", "client"):
        print(__doc__, file=sys.stderr)
        return 64
    role, framing = argv[1], argv[2]
    if framing not in ("line",) + tuple(STRING_CLASSES):
        print("unknown framing %r" % framing, file=sys.stderr)
        return 64
    reactor.callLater(TIMEOUT, finish, 2, "FAIL timeout")
    if role == "server":
        port = reactor.listenTCP(0, Serve(framing), interface="127.0.0.1")
        print("PORT %d" % port.getHost().port, flush=True)
    else:
        host, port = argv[3].rsplit(":", 1)
        if host not in ("127.0.0.1", "localhost"):
            print("loopback only", file=sys.stderr)
            return 64
        reactor.connectTCP(host, int(port), OneShot(framing), timeout=10)
    reactor.run()
    return 2 if EXIT["code"] is None else EXIT["code"]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
