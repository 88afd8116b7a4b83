//! `HttpClient` over loopback (feature `http`): against a scripted twill
//! server that answers each request with raw bytes (every framing, 1xx,
//! redirects, malformed and hostile responses, resets, silence), the
//! keep-alive pool counted by accepted connections, the per-host limits,
//! cancellation, and Python's `http.server` as an independent peer.
//!
//! The Python tests use `$TWILL_TWISTED_PYTHON` if set, else
//! `target/twisted-venv/bin/python` under the workspace root (made by
//! `benches/venv.sh`); with neither they print "skipped" and pass.
#![cfg(feature = "http")]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use twill::defer::{CancelledError, Deferred, Failure};
use twill::task::Clock;
use twill::{Protocol, Reactor, Reason, Transport};
use twill_protocols::codec::Decoder;
use twill_protocols::http::{
    Aggregated, HttpClient, HttpClientError, HttpRequestAggregator, HttpRequestDecoder, Trailers,
};
use twill_test_support::reactor::run;

/// What a scripted server does with a request: `(request, transport,
/// index of the request on its connection)`.
type Script = Rc<dyn Fn(&Request<Bytes>, &Transport, usize)>;

/// Counts of a scripted server.
#[derive(Default)]
struct Tally {
    accepted: Cell<usize>,
    open: Cell<usize>,
    most_open: Cell<usize>,
    closed: Cell<usize>,
    requests: RefCell<Vec<Request<Bytes>>>,
    close_waiters: RefCell<Vec<(usize, twill::defer::Resolver<()>)>>,
}

impl Tally {
    /// Fires once the server has seen `n` connections end.
    fn closed_at_least(&self, n: usize) -> Deferred<()> {
        let d = Deferred::new();
        if self.closed.get() >= n {
            d.callback(());
        } else {
            self.close_waiters.borrow_mut().push((n, d.resolver()));
        }
        d
    }
}

/// Lets the reactor turn (for states with no event to wait on).
async fn tick() {
    twill::task::defer_later(&twill::reactor(), Duration::from_millis(1), || Ok(()))
        .await
        .unwrap();
}

struct Scripted {
    transport: Option<Transport>,
    decoder: HttpRequestAggregator,
    input: BytesMut,
    served: usize,
    script: Script,
    tally: Rc<Tally>,
}

impl Protocol for Scripted {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        let tally = &self.tally;
        tally.accepted.set(tally.accepted.get() + 1);
        tally.open.set(tally.open.get() + 1);
        tally
            .most_open
            .set(tally.most_open.get().max(tally.open.get()));
    }

    fn data_received(&mut self, data: Bytes) {
        self.input.extend_from_slice(&data);
        while let Ok(Some(item)) = self.decoder.decode(&mut self.input) {
            if let Aggregated::Request(request) = item {
                let copy = Request::builder()
                    .method(request.method())
                    .uri(request.uri())
                    .body(request.body().clone())
                    .unwrap();
                let mut copy = copy;
                *copy.headers_mut() = request.headers().clone();
                self.tally.requests.borrow_mut().push(copy);
                (self.script)(&request, self.transport.as_ref().unwrap(), self.served);
                self.served += 1;
            }
        }
    }

    fn connection_lost(&mut self, _reason: &Reason) {
        self.tally.open.set(self.tally.open.get() - 1);
        self.tally.closed.set(self.tally.closed.get() + 1);
        let closed = self.tally.closed.get();
        let ready: Vec<_> = {
            let mut waiters = self.tally.close_waiters.borrow_mut();
            let (ready, waiting) = waiters.drain(..).partition(|(n, _)| *n <= closed);
            *waiters = waiting;
            ready
        };
        for (_, resolver) in ready {
            resolver.callback(());
        }
    }
}

/// A server on 127.0.0.1 that runs `script` for each request.
fn scripted(
    reactor: &Reactor,
    script: impl Fn(&Request<Bytes>, &Transport, usize) + 'static,
) -> (String, Rc<Tally>) {
    let script: Script = Rc::new(script);
    let tally = Rc::new(Tally::default());
    let counts = tally.clone();
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |_| Scripted {
            transport: None,
            decoder: HttpRequestAggregator::new(HttpRequestDecoder::new()).max_body(8 << 20),
            input: BytesMut::new(),
            served: 0,
            script: script.clone(),
            tally: counts.clone(),
        })
        .unwrap();
    (format!("http://{}", port.host()), tally)
}

/// Runs `test` on `reactor` (under the watchdog) and returns its output.
fn block_on<T: 'static>(reactor: &Reactor, test: impl Future<Output = T> + 'static) -> T {
    let out = Rc::new(RefCell::new(None));
    let slot = out.clone();
    twill::spawn(async move {
        *slot.borrow_mut() = Some(test.await);
        twill::stop();
    });
    run(reactor);
    let result = out.borrow_mut().take();
    result.expect("the test finished")
}

fn client_error(failure: &Failure) -> &HttpClientError {
    failure
        .downcast_ref::<HttpClientError>()
        .unwrap_or_else(|| panic!("not an HttpClientError: {failure}"))
}

fn text(body: &Bytes) -> &str {
    std::str::from_utf8(body).unwrap()
}

/// The responses of the framing tests, by path.
fn framings(request: &Request<Bytes>, transport: &Transport, _: usize) {
    let reply: &[u8] = match request.uri().path() {
        "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nchun\r\n3\r\nked\r\n0\r\nChecksum: 42\r\n\r\n",
        "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n",
        "/not-modified" => b"HTTP/1.1 304 Not Modified\r\nContent-Length: 55\r\n\r\n",
        "/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/until-close" => {
            transport.write(&b"HTTP/1.1 200 OK\r\n\r\nuntil the close"[..]);
            transport.lose_connection();
            return;
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    };
    transport.write(Bytes::copy_from_slice(reply));
}

#[test]
fn every_framing_is_read_and_keep_alive_connections_are_reused() {
    let reactor = Reactor::new().unwrap();
    let (base, tally) = scripted(&reactor, framings);
    let client = HttpClient::new();
    let (t, b) = (tally.clone(), base.clone());
    let seen = block_on(&reactor, async move {
        let get = |path: &str| client.get(&format!("{b}{path}"));
        let length = get("/length").await.unwrap();
        assert_eq!(text(length.body()), "hello");
        let chunked = get("/chunked").await.unwrap();
        assert_eq!(text(chunked.body()), "chunked");
        let trailers = chunked.extensions().get::<Trailers>().unwrap();
        assert_eq!(trailers.0["checksum"], "42");
        let head = client
            .request(
                Request::head(format!("{b}/head"))
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(head.headers()["content-length"], "100");
        assert!(head.body().is_empty());
        let no_content = get("/no-content").await.unwrap();
        assert_eq!(no_content.status(), StatusCode::NO_CONTENT);
        let not_modified = get("/not-modified").await.unwrap();
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert!(not_modified.body().is_empty());
        let continued = get("/continue").await.unwrap();
        assert_eq!(continued.status(), StatusCode::OK);
        assert_eq!(text(continued.body()), "ok");
        // All of these on the one connection.
        assert_eq!(t.accepted.get(), 1);
        assert_eq!(client.idle_connections("127.0.0.1", port_of(&b)), 1);

        let until_close = get("/until-close").await.unwrap();
        assert_eq!(text(until_close.body()), "until the close");
        assert_eq!(client.idle_connections("127.0.0.1", port_of(&b)), 0);
        let again = get("/length").await.unwrap();
        assert_eq!(text(again.body()), "hello");
        t.accepted.get()
    });
    assert_eq!(seen, 2, "a body read until the close ends its connection");
    let requests = tally.requests.borrow();
    let host = requests[0].headers()["host"].to_str().unwrap().to_owned();
    assert_eq!(format!("http://{host}"), base);
    assert!(!requests[0].headers().contains_key("user-agent"));
    assert!(!requests[0].headers().contains_key("content-length"));
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn responses_that_close_or_are_http_1_0_are_not_reused() {
    let reactor = Reactor::new().unwrap();
    let (base, tally) = scripted(&reactor, |request, transport, _| {
        let reply: &'static [u8] = match request.uri().path() {
            "/close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nc",
            "/old" => b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\no",
            _ => b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nk",
        };
        transport.write(reply);
    });
    let client = HttpClient::new();
    let t = tally.clone();
    block_on(&reactor, async move {
        for path in ["/close", "/close", "/old", "/old"] {
            client.get(&format!("{base}{path}")).await.unwrap();
        }
        assert_eq!(t.accepted.get(), 4);
        for _ in 0..3 {
            client.get(&format!("{base}/keep")).await.unwrap();
        }
        assert_eq!(t.accepted.get(), 5, "HTTP/1.0 with keep-alive is reused");
    });
}

#[test]
fn a_post_sends_its_body_and_a_redirect_is_returned_unless_followed() {
    let reactor = Reactor::new().unwrap();
    let (base, tally) = scripted(&reactor, |request, transport, _| {
        let reply = match request.uri().path() {
            "/old" => {
                "HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            "/loop" => {
                "HTTP/1.1 307 Again\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            "/keep-method" => {
                "HTTP/1.1 308 Moved\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            _ => {
                let body = format!("{} {}", request.method(), request.body().len());
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        transport.write(reply);
    });
    let plain = HttpClient::new();
    let following = HttpClient::new().follow_redirects(3);
    let t = tally.clone();
    block_on(&reactor, async move {
        let echoed = plain.post(&format!("{base}/new"), "payload").await.unwrap();
        assert_eq!(text(echoed.body()), "POST 7");

        let redirect = plain.get(&format!("{base}/old")).await.unwrap();
        assert_eq!(redirect.status(), StatusCode::FOUND);
        assert_eq!(redirect.headers()["location"], "/new");

        let followed = following.post(&format!("{base}/old"), "abc").await.unwrap();
        assert_eq!(followed.status(), StatusCode::OK);
        assert_eq!(
            text(followed.body()),
            "GET 0",
            "a POST redirected by 302 becomes a GET"
        );
        let kept = following
            .post(&format!("{base}/keep-method"), "abc")
            .await
            .unwrap();
        assert_eq!(text(kept.body()), "POST 3", "308 repeats the request");

        let failure = following.get(&format!("{base}/loop")).await.unwrap_err();
        assert!(matches!(
            client_error(&failure),
            HttpClientError::TooManyRedirects { limit: 3 }
        ));
        assert_eq!(t.accepted.get(), 2, "one connection per client");
    });
}

/// The error a request to a server answering `reply` (then closing, or
/// resetting) fails with.
fn failure_for(reply: &'static [u8], then: fn(&Transport), client: HttpClient) -> Failure {
    let reactor = Reactor::new().unwrap();
    let (base, _tally) = scripted(&reactor, move |_, transport, _| {
        transport.write(reply);
        then(transport);
    });
    block_on(&reactor, async move {
        client.get(&format!("{base}/")).await.unwrap_err()
    })
}

fn keep_open(_: &Transport) {}

#[test]
fn malformed_and_smuggling_responses_fail_typed() {
    let cases: &[(&[u8], u16)] = &[
        (b"HTTP/1.1 OK 200\r\n\r\n", 400),
        (b"ICY 200 OK\r\n\r\n", 400),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            400,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            400,
        ),
    ];
    for (reply, status) in cases {
        let failure = failure_for(reply, keep_open, HttpClient::new());
        match client_error(&failure) {
            HttpClientError::Malformed(err) => assert_eq!(err.status().as_u16(), *status),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(reply)),
        }
    }
}

#[test]
fn an_oversize_body_fails_and_closes_the_connection() {
    let client = || HttpClient::new().max_response_body(1024);
    let declared = failure_for(
        b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n",
        keep_open,
        client(),
    );
    assert!(matches!(
        client_error(&declared),
        HttpClientError::BodyTooLarge { limit: 1024 }
    ));
    let big_chunk: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
            "x".repeat(0x800)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let streamed = failure_for(big_chunk, keep_open, client());
    assert!(matches!(
        client_error(&streamed),
        HttpClientError::BodyTooLarge { limit: 1024 }
    ));
}

fn reset(transport: &Transport) {
    transport.abort_connection();
}

fn close(transport: &Transport) {
    transport.lose_connection();
}

#[test]
fn a_connection_lost_mid_response_fails_the_request() {
    let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b";
    let failure = failure_for(partial, close, HttpClient::new());
    assert!(
        matches!(
            client_error(&failure),
            HttpClientError::ConnectionLost {
                response_started: true
            }
        ),
        "{failure}"
    );
    // A reset may discard the partial response on either side before the
    // client reads it: only the kind of error is certain.
    let failure = failure_for(partial, reset, HttpClient::new());
    assert!(
        matches!(
            client_error(&failure),
            HttpClientError::ConnectionLost { .. }
        ),
        "{failure}"
    );
    let failure = failure_for(b"", close, HttpClient::new());
    assert!(matches!(
        client_error(&failure),
        HttpClientError::ConnectionLost {
            response_started: false
        }
    ));
}

#[test]
fn a_server_that_never_answers_times_out_on_the_clock() {
    let reactor = Reactor::new().unwrap();
    let clock = Clock::new();
    let advance = clock.clone();
    let (base, tally) = scripted(&reactor, move |_, _, _| {
        // Silence: only the clock moves.
        advance.advance(Duration::from_secs(29));
        advance.advance(Duration::from_secs(1));
    });
    let client = HttpClient::new().clock(Rc::new(clock));
    let t = tally.clone();
    let failure = block_on(&reactor, async move {
        let failure = client.get(&format!("{base}/")).await.unwrap_err();
        // The client closed the connection; wait for the server to see it.
        t.closed_at_least(1).await.unwrap();
        failure
    });
    assert!(matches!(
        client_error(&failure),
        HttpClientError::ResponseTimeout(after) if *after == Duration::from_secs(30)
    ));
    assert_eq!(tally.closed.get(), 1);
}

#[test]
fn cancelling_a_pending_request_closes_its_connection() {
    let reactor = Reactor::new().unwrap();
    let pending: Rc<RefCell<Option<Deferred<http::Response<Bytes>>>>> = Rc::default();
    let to_cancel = pending.clone();
    let (base, tally) = scripted(&reactor, move |_, _, _| {
        // The request arrived: cancel it instead of answering.
        if let Some(d) = to_cancel.borrow().as_ref() {
            d.cancel();
        }
    });
    let client = HttpClient::new();
    let t = tally.clone();
    let failure = block_on(&reactor, async move {
        let request = client.get(&format!("{base}/"));
        let watch = Deferred::new();
        let resolver = watch.resolver();
        request.add_both(move |result: Result<http::Response<Bytes>, Failure>| {
            if let Err(failure) = &result {
                resolver.callback(failure.clone());
            }
            result
                .map(|_| unreachable!())
                .or_else(|_| Ok(http::Response::new(Bytes::new())))
        });
        *pending.borrow_mut() = Some(request);
        let failure: Failure = watch.await.unwrap();
        t.closed_at_least(1).await.unwrap();
        failure
    });
    assert!(failure.check::<CancelledError>(), "{failure}");
    assert_eq!(tally.closed.get(), 1);
}

#[test]
fn refused_connections_and_unsupported_uris_fail_typed() {
    let reactor = Reactor::new().unwrap();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = HttpClient::new();
    block_on(&reactor, async move {
        let refused = client
            .get(&format!("http://127.0.0.1:{closed_port}/"))
            .await
            .unwrap_err();
        assert!(
            matches!(client_error(&refused), HttpClientError::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{refused}"
        );
        let https = client.get("https://127.0.0.1/").await.unwrap_err();
        assert!(matches!(
            client_error(&https),
            HttpClientError::UnsupportedScheme(s) if s == "https"
        ));
        let relative = client.get("/just/a/path").await.unwrap_err();
        assert!(matches!(
            client_error(&relative),
            HttpClientError::InvalidRequest(_)
        ));
    });
}

#[test]
fn a_pooled_connection_closed_by_the_server_leaves_the_pool() {
    let reactor = Reactor::new().unwrap();
    // Each response is followed by the server's close, as an idle timeout
    // on its side would.
    let (base, tally) = scripted(&reactor, |_, transport, _| {
        transport.write(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]);
        transport.lose_connection();
    });
    let client = HttpClient::new();
    let t = tally.clone();
    block_on(&reactor, async move {
        let port = port_of(&base);
        client.get(&format!("{base}/")).await.unwrap();
        t.closed_at_least(1).await.unwrap();
        // The client sees the close in the same turn or the next few.
        while client.idle_connections("127.0.0.1", port) > 0 {
            tick().await;
        }
        client.get(&format!("{base}/")).await.unwrap();
        assert_eq!(t.accepted.get(), 2);
    });
}

#[test]
fn an_idempotent_request_is_retried_once_when_a_reused_connection_closes_under_it() {
    let reactor = Reactor::new().unwrap();
    // The second request on a connection finds it closed (the race of a
    // request with the server's idle close).
    let (base, tally) = scripted(&reactor, |_, transport, index| {
        if index == 0 {
            transport.write(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]);
        } else {
            transport.lose_connection();
        }
    });
    let client = HttpClient::new();
    let t = tally.clone();
    block_on(&reactor, async move {
        client.get(&format!("{base}/")).await.unwrap();
        let retried = client.get(&format!("{base}/")).await.unwrap();
        assert_eq!(text(retried.body()), "ok");
        assert_eq!(t.accepted.get(), 2);
        let post = client.post(&format!("{base}/"), "x").await.unwrap_err();
        assert!(matches!(
            client_error(&post),
            HttpClientError::ConnectionLost {
                response_started: false
            }
        ));
        assert_eq!(t.accepted.get(), 2, "a POST is not sent twice");
    });
}

#[test]
fn concurrent_requests_share_a_bounded_number_of_connections() {
    let reactor = Reactor::new().unwrap();
    let (base, tally) = scripted(&reactor, |request, transport, _| {
        let body = request.uri().path().to_owned();
        let transport = transport.clone();
        // Answer a little later, so that requests pile up.
        twill::call_later(Duration::from_millis(2), move || {
            transport.write(format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        });
    });
    let client = HttpClient::new()
        .max_connections_per_host(3)
        .max_queued_per_host(30);
    let t = tally.clone();
    block_on(&reactor, async move {
        let requests: Vec<_> = (0..40)
            .map(|i| client.get(&format!("{base}/{i}")))
            .collect();
        let mut ok = 0;
        let mut full = 0;
        for (i, request) in requests.into_iter().enumerate() {
            match request.await {
                Ok(response) => {
                    assert_eq!(text(response.body()), format!("/{i}"));
                    ok += 1;
                }
                Err(failure) => {
                    assert!(matches!(
                        client_error(&failure),
                        HttpClientError::QueueFull { limit: 30 }
                    ));
                    full += 1;
                }
            }
        }
        assert_eq!((ok, full), (33, 7), "3 sent, 30 queued, the rest refused");
        assert_eq!(t.accepted.get(), 3);
        assert_eq!(t.most_open.get(), 3);
    });
}

/// The first interpreter that has `http.server`: `$TWILL_TWISTED_PYTHON`,
/// else the workspace's venv.
fn python() -> Option<PathBuf> {
    twill_test_support::python::interpreter_with("http.server")
}

/// A threading `http.server` speaking HTTP/1.1 with keep-alive: `GET
/// /bytes/N` answers N bytes of a known pattern with their CRC-32 in
/// `X-Crc32`; `POST` answers the CRC-32 and length of the body. It exits
/// after 30 s whatever happens.
const PYTHON_SERVER: &str = r#"
import http.server, socketserver, sys, threading, zlib, os

def pattern(n):
    block = bytes(range(256)) * 4096
    return (block * (n // len(block) + 1))[:n]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def reply(self, body, crc):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Crc32", str(crc))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[1])
        body = pattern(n)
        self.reply(body, zlib.crc32(body))
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.reply(("%d %d" % (zlib.crc32(body), len(body))).encode(), 0)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Timer(30, lambda: os._exit(1)).start()
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[test]
fn python_http_server_get_and_post_of_several_mib() {
    let Some(python) = python() else {
        println!("skipped: no Python (set TWILL_TWISTED_PYTHON or run benches/venv.sh)");
        return;
    };
    let mut child = Command::new(python)
        .args(["-c", PYTHON_SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().expect("the server's port");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let reactor = Reactor::new().unwrap();
    let client = HttpClient::new();
    block_on(&reactor, async move {
        let size = 3 * 1024 * 1024 + 17;
        let got = client
            .get(&format!("http://{addr}/bytes/{size}"))
            .await
            .unwrap();
        assert_eq!(got.body().len(), size);
        let crc: u32 = got.headers()["x-crc32"].to_str().unwrap().parse().unwrap();
        assert_eq!(crc32(got.body()), crc);

        let body: Vec<u8> = (0..4 * 1024 * 1024 + 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let expected = format!("{} {}", crc32(&body), body.len());
        let posted = client
            .request(
                Request::builder()
                    .method(Method::POST)
                    .uri(format!("http://{addr}/upload"))
                    .body(Bytes::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(text(posted.body()), expected);
        // Both on one kept-alive connection.
        assert_eq!(client.idle_connections("127.0.0.1", port), 1);
    });
}

#[test]
fn twill_http_server_keeps_the_connection_and_streams_a_chunked_body() {
    use twill_protocols::http::{Body, HttpServer};
    let reactor = Reactor::new().unwrap();
    let accepted = Rc::new(Cell::new(0));
    let server = HttpServer::new(|request: Request<Bytes>| {
        let body = match request.uri().path() {
            "/stream" => Body::stream(|writer| {
                for piece in ["one ", "two ", "three"] {
                    writer.write(piece);
                }
                writer.finish();
            }),
            path => Body::from(format!(
                "{} {} {}",
                request.method(),
                path,
                request.body().len()
            )),
        };
        twill::defer::succeed(http::Response::new(body))
    });
    let count = accepted.clone();
    let mut server = server;
    let port = reactor
        .listen_tcp("127.0.0.1:0", move |peer| {
            count.set(count.get() + 1);
            twill::Factory::build_protocol(&mut server, peer).unwrap()
        })
        .unwrap();
    let base = format!("http://{}", port.host());
    let client = HttpClient::new();
    let connections = accepted.clone();
    block_on(&reactor, async move {
        let got = client.get(&format!("{base}/a")).await.unwrap();
        assert_eq!(text(got.body()), "GET /a 0");
        let streamed = client.get(&format!("{base}/stream")).await.unwrap();
        assert_eq!(streamed.headers()["transfer-encoding"], "chunked");
        assert_eq!(text(streamed.body()), "one two three");
        let body = Bytes::from(vec![b'x'; 300_000]);
        let posted = client.post(&format!("{base}/b"), body).await.unwrap();
        assert_eq!(text(posted.body()), "POST /b 300000");
        assert_eq!(connections.get(), 1);
    });
}

/// The module's example: the only handle of the client goes into the
/// first response's callback, which makes the second request and drops
/// it; the pending request keeps the pool alive.
#[test]
fn a_request_made_by_the_last_handle_in_a_callback_is_answered() {
    use twill_protocols::http::{Body, HttpServer};
    let reactor = Reactor::new().unwrap();
    let server = HttpServer::new(|request: Request<Bytes>| {
        twill::defer::succeed(http::Response::new(Body::from(
            request.uri().path().to_owned(),
        )))
    });
    let port = reactor.listen_tcp("127.0.0.1:0", server).unwrap();
    let base = format!("http://{}", port.host());
    let client = HttpClient::new().max_connections_per_host(4);
    let done = client.get(&format!("{base}/first")).then(move |first| {
        assert_eq!(&first.body()[..], b"/first");
        client.post(&format!("{base}/second"), "a body")
    });
    done.add_both(|result| {
        twill::stop();
        result
    });
    run(&reactor);
    let second = done.result().unwrap().expect("the second response");
    assert_eq!(&second.body()[..], b"/second");
}

fn hello(_: &Request<Bytes>, transport: &Transport, _: usize) {
    transport.write(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..]);
}

#[test]
fn idle_connections_close_after_the_idle_timeout_on_the_clock() {
    let reactor = Reactor::new().unwrap();
    let (base, tally) = scripted(&reactor, hello);
    let clock = Clock::new();
    let client = HttpClient::new()
        .idle_timeout(Duration::from_secs(5))
        .clock(Rc::new(clock.clone()));
    let t = tally.clone();
    block_on(&reactor, async move {
        let port = port_of(&base);
        client.get(&format!("{base}/")).await.unwrap();
        assert_eq!(client.idle_connections("127.0.0.1", port), 1);
        clock.advance(Duration::from_millis(4999));
        client.get(&format!("{base}/")).await.unwrap();
        assert_eq!(t.accepted.get(), 1, "reused before the timeout");
        clock.advance(Duration::from_secs(5));
        t.closed_at_least(1).await.unwrap();
        assert_eq!(client.idle_connections("127.0.0.1", port), 0);
        client.get(&format!("{base}/")).await.unwrap();
        assert_eq!(t.accepted.get(), 2);
    });
}

#[test]
fn a_panicking_callback_leaves_the_client_working() {
    let reactor = Reactor::new().unwrap();
    let (base, tally) = scripted(&reactor, hello);
    let client = HttpClient::new();
    let t = tally.clone();
    block_on(&reactor, async move {
        let first = client.get(&format!("{base}/"));
        let failed = first.then(|_| -> Result<(), Failure> { panic!("a callback's bug") });
        let failure = failed.await.unwrap_err();
        assert!(
            failure.to_string().contains("a callback's bug"),
            "{failure}"
        );
        let again = client.get(&format!("{base}/")).await.unwrap();
        assert_eq!(text(again.body()), "hello");
        assert_eq!(t.accepted.get(), 1);
    });
}

/// Sequential requests over one kept-alive connection to twill's own
/// server, timed: run with
/// `cargo test --release -p twill-protocols --all-features --test http_client -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_sequential_keep_alive_requests() {
    use twill_protocols::http::{Body, HttpServer};
    let reactor = Reactor::new().unwrap();
    let server = HttpServer::new(|_: Request<Bytes>| {
        twill::defer::succeed(http::Response::new(Body::from("hello")))
    });
    let port = reactor.listen_tcp("127.0.0.1:0", server).unwrap();
    let uri = format!("http://{}/", port.host());
    let client = HttpClient::new();
    let count = 20_000;
    let elapsed = block_on(&reactor, async move {
        let start = std::time::Instant::now();
        for _ in 0..count {
            client.get(&uri).await.unwrap();
        }
        start.elapsed()
    });
    println!(
        "{count} sequential GETs on one connection in {elapsed:?}: {:.0} requests/s",
        f64::from(count) / elapsed.as_secs_f64()
    );
}
