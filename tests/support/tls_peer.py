"""TLS peers for twill's wire-compatibility tests (tests/tls_peers.rs).

Python 3.11+, standard library only: the `ssl` module, over asyncio streams
(`asyncio.open_connection(ssl=...)`, `asyncio.start_server(ssl=...)`,
`StreamWriter.start_tls`) or over blocking sockets where the test needs to
see exactly what happens on the wire (close_notify or not, a reader that
does not read).

    python tls_peer.py MODE [options]

Servers listen on 127.0.0.1 on a port of the system's choice, print
`listening on 127.0.0.1:PORT` on stderr, serve one connection (the SNI
client: one per name) and exit. Clients connect to 127.0.0.1:PORT
(`--port`). What a peer learns goes to stdout as `KEY VALUE` lines
(`version TLSv1.3`, `alpn http/1.1`, `echo hello`, ...); a failure is one
`error CLASS: MESSAGE` line, after which the peer exits with status 0, so
the test decides whether a failure was expected. Every blocking wait is
bounded by --timeout.
"""

import argparse
import asyncio
import hashlib
import random
import socket
import ssl
import sys

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def say(key, value=""):
    print(f"{key} {value}".rstrip(), flush=True)


def fail(exc):
    say("error", f"{type(exc).__name__}: {exc}")


def pin(ctx, version):
    if version:
        ctx.minimum_version = ctx.maximum_version = VERSIONS[version]


def client_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and name
    ctx.load_verify_locations(args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    pin(ctx, args.tls)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    return ctx


def server_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)
    pin(ctx, args.tls)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    return ctx


def report(ssl_object):
    """What the handshake negotiated, and who the peer is."""
    say("version", ssl_object.version())
    say("cipher", ssl_object.cipher()[0])
    say("alpn", ssl_object.selected_alpn_protocol() or "-")
    peer = ssl_object.getpeercert()
    if peer:
        cn = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
        say("peer-cn", ",".join(cn))
        san = [f"{k}:{v}" for k, v in peer.get("subjectAltName", ())]
        say("peer-san", ",".join(san))
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        say("peer-cert-sha256", hashlib.sha256(der).hexdigest())


def listening(server_socket):
    host, port = server_socket.getsockname()[:2]
    print(f"listening on {host}:{port}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- asyncio


async def echo_server(args):
    """Echoes one connection until the peer's close_notify, then closes
    with its own."""
    done = asyncio.Event()

    async def handle(reader, writer):
        try:
            report(writer.get_extra_info("ssl_object"))
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            say("eof")
            writer.close()
            await writer.wait_closed()
            say("closed")
        except (OSError, asyncio.IncompleteReadError) as exc:
            fail(exc)
        finally:
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(args))
    listening(server.sockets[0])
    await done.wait()
    server.close()


async def echo_client(args):
    """Per server name: sends the message, reads its echo, closes with
    close_notify."""
    for name in args.server_name:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", args.port, ssl=client_context(args), server_hostname=name
            )
            report(writer.get_extra_info("ssl_object"))
            message = args.message.encode()
            writer.write(message)
            echoed = await reader.readexactly(len(message))
            say("echo", echoed.decode())
            writer.close()
            await writer.wait_closed()
            say("closed")
        except (OSError, asyncio.IncompleteReadError) as exc:
            fail(exc)


async def starttls_server(args):
    """`220 ready`, `STARTTLS`, `220 go ahead`, both sides upgrade, then
    an encrypted line echo until the peer's close_notify."""
    done = asyncio.Event()

    async def handle(reader, writer):
        try:
            writer.write(b"220 ready\r\n")
            await writer.drain()
            command = await reader.readline()
            say("command", command.decode().strip())
            if command != b"STARTTLS\r\n":
                return
            writer.write(b"220 go ahead\r\n")
            await writer.drain()
            await writer.start_tls(server_context(args))
            report(writer.get_extra_info("ssl_object"))
            while line := await reader.readline():
                say("line", line.decode().strip())
                writer.write(b"echo: " + line)
                await writer.drain()
            say("eof")
            writer.close()
            await writer.wait_closed()
            say("closed")
        except (OSError, asyncio.IncompleteReadError) as exc:
            fail(exc)
        finally:
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    listening(server.sockets[0])
    await done.wait()
    server.close()


async def starttls_client(args):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        say("greeting", (await reader.readline()).decode().strip())
        writer.write(b"STARTTLS\r\n")
        await writer.drain()
        say("answer", (await reader.readline()).decode().strip())
        await writer.start_tls(client_context(args), server_hostname=args.server_name[0])
        report(writer.get_extra_info("ssl_object"))
        writer.write(args.message.encode() + b"\r\n")
        await writer.drain()
        say("reply", (await reader.readline()).decode().strip())
        writer.close()
        await writer.wait_closed()
        say("closed")
    except (OSError, asyncio.IncompleteReadError) as exc:
        fail(exc)


async def bulk(reader, writer, size):
    """Sends `size` pseudo-random bytes while reading `size` bytes, then
    waits for the peer's close_notify (a clean EOF)."""
    data = random.Random(size).randbytes(size)
    say("sent-sha256", hashlib.sha256(data).hexdigest())

    async def send():
        view = memoryview(data)
        for start in range(0, size, 256 * 1024):
            writer.write(view[start : start + 256 * 1024])
            await writer.drain()

    async def receive():
        digest, got = hashlib.sha256(), 0
        while got < size:
            chunk = await reader.read(1024 * 1024)
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
        say("received", f"{got} {digest.hexdigest()}")

    await asyncio.gather(send(), receive())
    rest = await reader.read()
    say("eof", "clean" if rest == b"" else f"{len(rest)} more bytes")
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def bulk_server(args):
    done = asyncio.Event()

    async def handle(reader, writer):
        try:
            report(writer.get_extra_info("ssl_object"))
            await bulk(reader, writer, args.size)
        except (OSError, asyncio.IncompleteReadError) as exc:
            fail(exc)
        finally:
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(args))
    listening(server.sockets[0])
    await done.wait()
    server.close()


async def bulk_client(args):
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", args.port, ssl=client_context(args),
            server_hostname=args.server_name[0],
        )
        report(writer.get_extra_info("ssl_object"))
        await bulk(reader, writer, args.size)
    except (OSError, asyncio.IncompleteReadError) as exc:
        fail(exc)


# ---------------------------------------------------------- blocking sockets


def handshake_server(args):
    """Accepts one connection and reports how its handshake went (a client
    that refuses the certificate sends an alert), then echoes."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listening(listener)
        conn, _ = listener.accept()
    conn.settimeout(args.timeout)
    try:
        with server_context(args).wrap_socket(conn, server_side=True) as tls:
            report(tls)
            while data := tls.recv(65536):
                tls.sendall(data)
            say("eof")
    except OSError as exc:
        fail(exc)


def close_server(args):
    """Sends a line, then closes with close_notify (`--how unwrap`) or cuts
    the TCP connection without one (`--how shutdown`)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listening(listener)
        conn, _ = listener.accept()
    conn.settimeout(args.timeout)
    try:
        tls = server_context(args).wrap_socket(conn, server_side=True)
        report(tls)
        tls.sendall(args.message.encode() + b"\n")
        if args.how == "unwrap":
            # close_notify, then wait for the peer's: a clean TLS close.
            plain = tls.unwrap()
            say("unwrapped")
            plain.close()
        else:
            # SSLSocket.shutdown shuts the TCP socket, with no close_notify.
            tls.shutdown(socket.SHUT_RDWR)
            tls.close()
            say("cut")
    except OSError as exc:
        fail(exc)


def read_client(args):
    """Connects, optionally waits for `go` on stdin before reading (a slow
    reader, with a small receive buffer), then reads until the end of the
    stream: `eof clean` only if it ended with close_notify (ragged EOFs are
    not suppressed, so a cut connection raises SSLEOFError)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    sock.settimeout(args.timeout)
    try:
        sock.connect(("127.0.0.1", args.port))
        tls = client_context(args).wrap_socket(
            sock, server_hostname=args.server_name[0], suppress_ragged_eofs=False
        )
        report(tls)
        if args.wait_stdin:
            say("waiting")
            line = sys.stdin.readline()
            say("reading", line.strip())
        digest, got, head = hashlib.sha256(), 0, b""
        while chunk := tls.recv(256 * 1024):
            digest.update(chunk)
            got += len(chunk)
            if len(head) < 200:
                head += chunk[: 200 - len(head)]
        say("received", f"{got} {digest.hexdigest()}")
        if got <= 200:
            say("text", head.decode(errors="replace").strip())
        say("eof", "clean")
        tls.close()
    except OSError as exc:
        fail(exc)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode")
    parser.add_argument("--port", type=int)
    parser.add_argument("--ca", help="CA file the client trusts")
    parser.add_argument("--cert", help="own certificate chain (PEM)")
    parser.add_argument("--key", help="own private key (PEM)")
    parser.add_argument("--client-ca", help="server: require a client certificate from this CA")
    parser.add_argument("--tls", choices=sorted(VERSIONS), help="only this TLS version")
    parser.add_argument("--alpn", help="comma-separated ALPN protocols")
    parser.add_argument("--server-name", action="append", help="client: SNI and name to verify")
    parser.add_argument("--message", default="hello twill")
    parser.add_argument("--size", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--how", choices=["unwrap", "shutdown"], default="unwrap")
    parser.add_argument("--rcvbuf", type=int, default=0)
    parser.add_argument("--wait-stdin", action="store_true")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    args.server_name = args.server_name or ["localhost"]

    modes = {
        "echo-server": echo_server,
        "echo-client": echo_client,
        "starttls-server": starttls_server,
        "starttls-client": starttls_client,
        "bulk-server": bulk_server,
        "bulk-client": bulk_client,
        "handshake-server": handshake_server,
        "close-server": close_server,
        "read-client": read_client,
    }
    run = modes[args.mode]
    if asyncio.iscoroutinefunction(run):
        try:
            asyncio.run(asyncio.wait_for(run(args), args.timeout))
        except asyncio.TimeoutError:
            say("error", f"TimeoutError: no progress within {args.timeout}s")
    else:
        run(args)
    say("done")


if __name__ == "__main__":
    main()
