"""HTTP clients from Python's standard library against twill's HttpServer
(driven by tests/http_peers.rs).

    python http_peer.py SCENARIO PORT [ARG]

Each scenario talks to 127.0.0.1:PORT, checks what it gets, prints one
line starting with "OK" and exits 0; any mismatch raises (exit status 1,
with a traceback on stderr). Every socket operation times out after 15 s,
so a server that stops answering fails the scenario instead of hanging it.

The server's routes (the test's handler): GET/HEAD /, POST /echo (the body
back), GET /stream?lines=N (chunked, "line K" per line), /files/NAME.
"""

import hashlib
import http.client
import os
import socket
import sys

TIMEOUT = 15


def connection(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)


def expect(what, got, wanted):
    if got != wanted:
        raise AssertionError(f"{what}: got {got!r}, wanted {wanted!r}")


def stream_text(lines):
    return b"".join(b"line %d\n" % n for n in range(1, lines + 1))


def keepalive(port):
    """Several requests on one HTTPConnection travel on one TCP connection."""
    conn = connection(port)
    local_ports = set()
    exchanges = [
        ("GET", "/", None, b"hello\n"),
        ("POST", "/echo", b"ping", b"ping"),
        ("GET", "/stream?lines=3", None, stream_text(3)),
        ("HEAD", "/", None, b""),
        ("GET", "/missing", None, b"not found\n"),
        ("GET", "/", None, b"hello\n"),
    ]
    for method, path, body, wanted in exchanges:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        expect(f"{method} {path} body", response.read(), wanted)
        expect(f"{method} {path} keep-alive", response.will_close, False)
        local_ports.add(conn.sock.getsockname()[1])
    expect("local ports used", len(local_ports), 1)
    conn.close()
    print(f"OK keepalive {len(exchanges)} requests on 1 connection")


def chunked_upload(port):
    """A body sent in chunked coding (encode_chunked) comes back whole."""
    pieces = [os.urandom(n) for n in (1, 17, 4096, 65536, 3, 100000)]

    def body():
        yield from pieces

    conn = connection(port)
    conn.request(
        "POST",
        "/echo",
        body=body(),
        headers={"Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    expect("status", response.status, 200)
    expect("echo", response.read(), b"".join(pieces))
    print(f"OK chunked-upload {sum(map(len, pieces))} bytes in {len(pieces)} chunks")


def chunked_response(port):
    """A streamed body arrives in chunked coding and http.client decodes it."""
    conn = connection(port)
    conn.request("GET", "/stream?lines=5000")
    response = conn.getresponse()
    expect("status", response.status, 200)
    expect("transfer-encoding", response.getheader("Transfer-Encoding"), "chunked")
    expect("content-length", response.getheader("Content-Length"), None)
    expect("body", response.read(), stream_text(5000))
    # The connection is still good for another request.
    conn.request("GET", "/")
    expect("after", conn.getresponse().read(), b"hello\n")
    print("OK chunked-response 5000 lines")


def upload(port, size):
    """A large body, posted with Content-Length, is echoed intact."""
    size = int(size)
    data = os.urandom(size)
    conn = connection(port)
    conn.request("POST", "/echo", body=data)
    response = conn.getresponse()
    expect("status", response.status, 200)
    got = hashlib.sha256()
    received = 0
    while block := response.read(1 << 16):
        got.update(block)
        received += len(block)
    expect("length", received, size)
    expect("sha256", got.hexdigest(), hashlib.sha256(data).hexdigest())
    print(f"OK upload {size} bytes sha256 {got.hexdigest()}")


def download(port, path):
    """A large file from /files/ arrives intact."""
    wanted = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            wanted.update(block)
    conn = connection(port)
    conn.request("GET", "/files/" + os.path.basename(path))
    response = conn.getresponse()
    expect("status", response.status, 200)
    expect(
        "content-length",
        response.getheader("Content-Length"),
        str(os.path.getsize(path)),
    )
    got = hashlib.sha256()
    while block := response.read(1 << 16):
        got.update(block)
    expect("sha256", got.hexdigest(), wanted.hexdigest())
    print(f"OK download {os.path.getsize(path)} bytes sha256 {got.hexdigest()}")


class Responses:
    """Reads HTTP/1.1 responses off a socket, one at a time, in order."""

    def __init__(self, sock):
        self.file = sock.makefile("rb")

    def line(self):
        line = self.file.readline(65536)
        if not line.endswith(b"\r\n"):
            raise AssertionError(f"truncated line {line!r}")
        return line[:-2]

    def next(self, method):
        version, status, _reason = self.line().split(b" ", 2)
        expect("version", version, b"HTTP/1.1")
        headers = {}
        while line := self.line():
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip()
        status = int(status)
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while size := int(self.line().split(b";")[0], 16):
                body += self.file.read(size)
                expect("chunk end", self.line(), b"")
            while self.line():  # trailers
                pass
        else:
            body = self.file.read(int(headers.get(b"content-length", b"0")))
        return status, headers, body

    def at_eof(self):
        return self.file.read(1) == b""


def pipeline(port):
    """Ten requests in one write, answered in order on one connection."""
    requests = [
        ("GET", "/", b"", 200, b"hello\n"),
        ("GET", "/stream?lines=2", b"", 200, stream_text(2)),
        ("GET", "/missing", b"", 404, b"not found\n"),
        ("POST", "/echo", b"first body", 200, b"first body"),
        ("HEAD", "/", b"", 200, b""),
        ("POST", "/echo", b"x" * 70000, 200, b"x" * 70000),
        ("GET", "/stream?lines=1", b"", 200, stream_text(1)),
        ("HEAD", "/stream?lines=9", b"", 200, b""),
        ("POST", "/echo", b"", 200, b""),
        ("GET", "/", b"", 200, b"hello\n"),
    ]
    wire = b""
    for n, (method, path, body, _, _) in enumerate(requests):
        last = n == len(requests) - 1
        wire += f"{method} {path} HTTP/1.1\r\nHost: peer\r\n".encode()
        if method == "POST":
            wire += b"Content-Length: %d\r\n" % len(body)
        if last:
            wire += b"Connection: close\r\n"
        wire += b"\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(wire)
        responses = Responses(sock)
        for method, path, _, status, body in requests:
            got_status, headers, got_body = responses.next(method)
            expect(f"{method} {path} status", got_status, status)
            expect(f"{method} {path} body", got_body, body)
            if method == "HEAD" and path == "/":
                expect("HEAD content-length", headers.get(b"content-length"), b"6")
        if not responses.at_eof():
            raise AssertionError("data after the last answer")
    print(f"OK pipeline {len(requests)} responses in order")


SCENARIOS = {
    "keepalive": keepalive,
    "chunked-upload": chunked_upload,
    "chunked-response": chunked_response,
    "upload": upload,
    "download": download,
    "pipeline": pipeline,
}

if __name__ == "__main__":
    scenario, port, *rest = sys.argv[1:]
    SCENARIOS[scenario](int(port), *rest)
