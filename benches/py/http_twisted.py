"""Hello-world HTTP server on Twisted Web, the baseline for Twisted.

    python http_twisted.py [127.0.0.1:0]

A ``twisted.web.resource.Resource`` whose ``render_GET`` returns
``Hello, World!``, served by ``twisted.web.server.Site`` on the epoll
reactor: the shape of Twisted Web's documentation. Twisted adds
Content-Length (the body is returned whole), Date, Server and keep-alive;
pipelined requests are answered in order. The access log is off, as a
benchmark's would be. Prints ``listening on HOST:PORT`` to stderr when
ready; runs until killed.
"""

import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.web import resource, server  # noqa: E402

BODY = b"Hello, World!"


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return BODY


class QuietSite(server.Site):
    # One log line per request would cost more than the request itself.
    noisy = False

    def log(self, request):
        pass


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0").rpartition(":")
    listening = reactor.listenTCP(int(port), QuietSite(Hello()), backlog=1024, interface=host)
    bound = listening.getHost()
    print(f"listening on {bound.host}:{bound.port}", file=sys.stderr, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
