"""Echo server on Twisted, the baseline for Twisted.

    python echo_twisted.py [127.0.0.1:0]

The Protocol from Twisted's documentation (``dataReceived`` writes the data
back), on the epoll reactor, with TCP_NODELAY and a listen backlog of 1024.
Prints ``listening on HOST:PORT`` to stderr when ready; runs until killed.
"""

import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402


class Echo(protocol.Protocol):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)


class EchoFactory(protocol.Factory):
    protocol = Echo
    # The factory's start/stop messages would only be noise.
    noisy = False


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0").rpartition(":")
    listening = reactor.listenTCP(int(port), EchoFactory(), backlog=1024, interface=host)
    bound = listening.getHost()
    print(f"listening on {bound.host}:{bound.port}", file=sys.stderr, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
