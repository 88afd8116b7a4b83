"""The "Spreader" on Twisted, the baseline for the fan-out benchmark.

    python spreader_twisted.py [127.0.0.1:0]

Same wire behaviour as twill's ``examples/broadcast_server.rs``: each client
is welcomed with ``Welcome to Spread Site, you are client user number N!``
(N = the clients connected now), every chunk a client sends is relayed as
it was read to every other client, and a chunk that is ``close`` (trailing
whitespace ignored) closes the sender's connection.

The classic Twisted shape: the factory keeps the list of connected
protocols, ``dataReceived`` writes the data to every other client's
transport. Epoll reactor, TCP_NODELAY, a listen backlog of 1024. Prints
``listening on HOST:PORT`` to stderr when ready; runs until killed.
"""

import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402


class Spreader(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        clients = self.factory.clients
        clients.append(self)
        self.transport.write(
            b"Welcome to Spread Site, you are client user number %d!\n" % len(clients)
        )

    def dataReceived(self, data):
        if data.rstrip() == b"close":
            self.transport.loseConnection()
            return
        for client in self.factory.clients:
            if client is not self:
                client.transport.write(data)

    def connectionLost(self, reason):
        clients = self.factory.clients
        if self in clients:
            clients.remove(self)


class SpreadFactory(protocol.Factory):
    protocol = Spreader
    # The factory's start/stop messages would only be noise.
    noisy = False

    def __init__(self):
        self.clients = []


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0").rpartition(":")
    listening = reactor.listenTCP(int(port), SpreadFactory(), backlog=1024, interface=host)
    bound = listening.getHost()
    print(f"listening on {bound.host}:{bound.port}", file=sys.stderr, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
