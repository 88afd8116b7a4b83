//! `HttpServer` and `StaticFiles` against hostile clients and careless
//! handlers, over 127.0.0.1: dates a client makes up, symbolic links a
//! folder holds, upgrades whose protocol fails to build, clients that stop
//! reading a file, and the promises (ranges, pipelining behind
//! `Connection: close`, `max_body`) that hold.

#![cfg(feature = "http")]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use twill::defer::{succeed, Deferred};
use twill::{Bytes, Reactor};
use twill_protocols::http::{Body, Handler, HttpServer, StaticFiles, Upgrade};
use twill_test_support::files::TempDir;
use twill_test_support::reactor::{connect, serve};

/// Runs `server` on a reactor and `client` against it, then stops.
fn with_server<H: Handler>(
    server: HttpServer<H>,
    client: impl FnOnce(SocketAddr) + Send + 'static,
) {
    let reactor = Reactor::new().unwrap();
    serve(&reactor, server, move |addr, handle| {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client(addr)));
        handle.stop();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Sends `request` on a new connection and reads until the server closes
/// it: every answer, as text (bodies here are small and ASCII).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    assert!(answer.starts_with("HTTP/1.1 "), "{answer:?}");
    answer[9..12].parse().unwrap()
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn field<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer
        .split_once("\r\n\r\n")
        .map_or(answer, |(head, _)| head);
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn get_closing(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: a\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

/// Whether the server ended the connection (EOF or reset) before `within`.
fn ends_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

// ------------------------------------------------------------ static files

#[test]
fn an_if_modified_since_with_an_absurd_year_is_ignored_not_a_panic() {
    let site = TempDir::new("review-dates");
    site.write("a.txt", "hello");
    let files = StaticFiles::new(site.path()).unwrap();
    with_server(HttpServer::new(files), |addr| {
        for date in [
            "Sun, 06 Nov 300000000000 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun Nov  6 08:49:37 9000000000000000000",
        ] {
            let answer = exchange(
                addr,
                &get_closing("/a.txt", &format!("If-Modified-Since: {date}\r\n")),
            );
            assert_eq!(status_of(&answer), 200, "{date}: {answer}");
            assert_eq!(body_of(&answer), "hello");
        }
    });
}

#[test]
fn a_folder_index_that_links_outside_the_folder_is_not_served() {
    let outside = TempDir::new("review-outside");
    let secret = outside.write("secret.txt", "the secret");
    let site = TempDir::new("review-site");
    std::fs::create_dir(site.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(&secret, site.path().join("sub/index.html")).unwrap();
    std::os::unix::fs::symlink(&secret, site.path().join("link.txt")).unwrap();
    let files = StaticFiles::new(site.path()).unwrap();
    with_server(HttpServer::new(files), |addr| {
        for path in ["/sub/", "/link.txt", "/sub/index.html"] {
            let answer = exchange(addr, &get_closing(path, ""));
            assert_eq!(status_of(&answer), 404, "{path}: {answer}");
            assert!(!answer.contains("the secret"), "{path}");
        }
    });
}

#[test]
fn path_tricks_get_404() {
    let site = TempDir::new("review-tricks");
    site.write("a.txt", "hello");
    std::fs::create_dir(site.path().join("d")).unwrap();
    let files = StaticFiles::new(site.path()).unwrap();
    let long = format!("/{}", "x".repeat(5000));
    with_server(
        HttpServer::new(files).max_request_line(16 * 1024),
        move |addr| {
            for path in [
                "/d%2f..%2fa.txt",
                "/d/%2e%2e/a.txt",
                "/%2e%2e/%2e%2e/etc/passwd",
                "/a.txt%00",
                "/d%5c..%5ca.txt",
                "/%zz",
                long.as_str(),
            ] {
                let answer = exchange(addr, &get_closing(path, ""));
                assert_eq!(status_of(&answer), 404, "{path}: {answer}");
            }
            let answer = exchange(addr, &get_closing("/d/./../a.txt", ""));
            // `..` as a segment is refused even where it would stay inside.
            assert_eq!(status_of(&answer), 404);
        },
    );
}

#[test]
fn range_edges_on_small_and_empty_files() {
    let site = TempDir::new("review-ranges");
    site.write("ten.txt", "0123456789");
    site.write("empty.txt", "");
    let files = StaticFiles::new(site.path()).unwrap();
    with_server(HttpServer::new(files), |addr| {
        let answer = exchange(addr, &get_closing("/ten.txt", "Range: bytes=0-0\r\n"));
        assert_eq!(status_of(&answer), 206);
        assert_eq!(field(&answer, "content-range"), Some("bytes 0-0/10"));
        assert_eq!(body_of(&answer), "0");

        let answer = exchange(addr, &get_closing("/ten.txt", "Range: bytes=-100\r\n"));
        assert_eq!(status_of(&answer), 206);
        assert_eq!(field(&answer, "content-range"), Some("bytes 0-9/10"));
        assert_eq!(body_of(&answer), "0123456789");

        let answer = exchange(addr, &get_closing("/ten.txt", "Range: bytes=10-\r\n"));
        assert_eq!(status_of(&answer), 416);
        assert_eq!(field(&answer, "content-range"), Some("bytes */10"));

        let answer = exchange(addr, &get_closing("/empty.txt", ""));
        assert_eq!(status_of(&answer), 200);
        assert_eq!(field(&answer, "content-length"), Some("0"));

        let answer = exchange(addr, &get_closing("/empty.txt", "Range: bytes=0-0\r\n"));
        assert_eq!(status_of(&answer), 416);
        assert_eq!(field(&answer, "content-range"), Some("bytes */0"));

        let answer = exchange(
            addr,
            b"HEAD /ten.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status_of(&answer), 200);
        assert_eq!(field(&answer, "content-length"), Some("10"));
        assert_eq!(body_of(&answer), "", "no body after the head of a HEAD");

        let answer = exchange(
            addr,
            &get_closing("/ten.txt", "If-Modified-Since: not a date\r\n"),
        );
        assert_eq!(status_of(&answer), 200, "an invalid date is ignored");
    });
}

/// A client that stops reading a large file must be cut at the idle
/// timeout, as it is for a body in memory: a file in flight is not in the
/// write buffer, so the buffer's size alone does not show it waiting.
#[test]
fn a_client_that_stops_reading_a_file_is_aborted_at_the_idle_timeout() {
    const SIZE: u64 = 256 << 20;
    let site = TempDir::new("review-big");
    // Sparse: no disk space, and `sendfile` reads zeros.
    std::fs::File::create(site.path().join("big.bin"))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    let files = StaticFiles::new(site.path()).unwrap();
    let server = HttpServer::new(files).idle_timeout(Duration::from_millis(200));
    with_server(server, |addr| {
        let mut stream = connect(addr);
        stream.write_all(&get_closing("/big.bin", "")).unwrap();
        // Reads nothing for several idle timeouts.
        std::thread::sleep(Duration::from_millis(1500));
        let mut total = 0u64;
        let mut buf = vec![0; 1 << 16];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(err) if err.kind() == ErrorKind::ConnectionReset => break,
                Err(err) => panic!("{err}"),
            }
        }
        assert!(total < SIZE, "the whole file was sent to a stalled client");
    });
}

// ------------------------------------------------------------ upgrades

fn upgrade_that_panics() -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "broken")
        .header("connection", "upgrade")
        .body(Body::Upgrade(Upgrade::new(|_| panic!("cannot build it"))))
        .unwrap()
}

#[test]
fn an_upgrade_whose_make_panics_closes_the_connection() {
    let server = HttpServer::new(|_: Request<Bytes>| succeed(upgrade_that_panics()));
    with_server(server, |addr| {
        let mut stream = connect(addr);
        stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: broken\r\nConnection: upgrade\r\n\r\n",
            )
            .unwrap();
        assert!(ends_within(&mut stream, Duration::from_secs(3)));
    });
}

#[test]
fn a_late_upgrade_whose_make_panics_closes_the_connection() {
    let server = HttpServer::new(|_: Request<Bytes>| {
        let answer = Deferred::new();
        let resolver = answer.resolver();
        twill::call_later(Duration::from_millis(10), move || {
            resolver.callback(upgrade_that_panics());
        });
        answer
    });
    with_server(server, |addr| {
        let mut stream = connect(addr);
        stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: broken\r\nConnection: upgrade\r\n\r\n",
            )
            .unwrap();
        assert!(
            ends_within(&mut stream, Duration::from_secs(3)),
            "the connection was left open with no protocol to answer"
        );
    });
}

// ------------------------------------------------------------ promises that hold

#[test]
fn requests_pipelined_behind_connection_close_are_not_answered() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        succeed(Response::new(Body::from(request.uri().path().to_string())))
    });
    with_server(server, |addr| {
        let mut all = get_closing("/first", "");
        all.extend_from_slice(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n");
        let answer = exchange(addr, &all);
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
        assert!(answer.ends_with("/first"));
    });
}

#[test]
fn a_body_of_exactly_max_body_is_taken_and_one_more_byte_is_413() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        succeed(Response::new(Body::from(format!(
            "{}",
            request.body().len()
        ))))
    })
    .max_body(1000);
    with_server(server, |addr| {
        let mut request =
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n"
                .to_vec();
        request.extend(vec![b'x'; 1000]);
        let answer = exchange(addr, &request);
        assert_eq!(status_of(&answer), 200);
        assert_eq!(body_of(&answer), "1000");

        let mut request =
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n".to_vec();
        request.extend(vec![b'x'; 1001]);
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        let answer = exchange(addr, &request);
        assert_eq!(status_of(&answer), 413, "{answer}");
    });
}

#[test]
fn a_stream_answered_to_http_1_0_is_closed_by_the_server_and_head_gets_no_body() {
    let server = HttpServer::new(|_: Request<Bytes>| {
        succeed(Response::new(Body::stream(|writer| {
            writer.write("one ");
            writer.write("two");
            writer.finish();
        })))
    });
    with_server(server, |addr| {
        let answer = exchange(addr, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(field(&answer, "connection"), Some("close"));
        assert_eq!(body_of(&answer), "one two");

        let answer = exchange(
            addr,
            b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status_of(&answer), 200);
        assert_eq!(body_of(&answer), "");
    });
}

// ------------------------------------------------------------ files over TLS

/// The byte at `at` of the test files: no period that divides a range.
fn pattern(at: u64) -> u8 {
    (at % 251) as u8
}

/// Runs `server` behind TLS on 127.0.0.1 and `client` against it with a
/// rustls client trusting the server's self-signed certificate.
fn with_tls_server<H: Handler>(
    server: HttpServer<H>,
    client: impl FnOnce(&dyn Fn() -> TlsStream) + Send + 'static,
) {
    use twill::tls::{config, PrivateKeyDer};
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let chain = vec![made.cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let server_config = config::server_config(chain.clone(), key).unwrap();
    let client_config = std::sync::Arc::new(config::client_config_trusting(chain).unwrap());
    let reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tls("127.0.0.1:0", server_config, server)
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let handle = reactor.handle();
    let thread = std::thread::spawn(move || {
        let open = move || {
            let session = twill::tls::rustls::ClientConnection::new(
                client_config.clone(),
                "localhost".try_into().unwrap(),
            )
            .unwrap();
            twill::tls::rustls::StreamOwned::new(session, connect(addr))
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client(&open)));
        handle.stop();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
    twill_test_support::reactor::run(&reactor);
    thread.join().unwrap();
}

type TlsStream = twill::tls::rustls::StreamOwned<twill::tls::rustls::ClientConnection, TcpStream>;

/// Sends `request` and reads until the server closes: the bytes, and
/// whether the close was clean (EOF rather than an error).
fn tls_exchange(mut stream: TlsStream, request: &[u8]) -> (Vec<u8>, bool) {
    stream.write_all(request).unwrap();
    stream.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err)
                if err.kind() == ErrorKind::TimedOut || err.kind() == ErrorKind::WouldBlock =>
            {
                panic!("the server neither finished nor closed: {err}")
            }
            Err(_) => return (got, false),
        }
    }
}

fn split_head(answer: &[u8]) -> (String, &[u8]) {
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    (
        String::from_utf8_lossy(&answer[..at + 4]).into_owned(),
        &answer[at + 4..],
    )
}

#[test]
fn static_files_and_ranges_over_tls() {
    const LEN: u64 = 3 << 20;
    let site = TempDir::new("review-tls");
    let data: Vec<u8> = (0..LEN).map(pattern).collect();
    site.write("data.bin", &data);
    let files = StaticFiles::new(site.path()).unwrap();
    with_tls_server(HttpServer::new(files), move |open| {
        let (answer, clean) = tls_exchange(open(), &get_closing("/data.bin", ""));
        assert!(clean);
        let (head, body) = split_head(&answer);
        assert_eq!(status_of(&head), 200, "{head}");
        assert_eq!(body, &data[..]);

        let (answer, _) = tls_exchange(
            open(),
            &get_closing("/data.bin", "Range: bytes=1000000-1000009\r\n"),
        );
        let (head, body) = split_head(&answer);
        assert_eq!(status_of(&head), 206, "{head}");
        assert_eq!(body, &data[1_000_000..1_000_010]);

        let (answer, _) = tls_exchange(
            open(),
            &get_closing("/data.bin", &format!("Range: bytes={}-\r\n", LEN - 1)),
        );
        let (head, body) = split_head(&answer);
        assert_eq!(
            field(&head, "content-range"),
            Some("bytes 3145727-3145727/3145728")
        );
        assert_eq!(body, &data[LEN as usize - 1..]);
    });
}

/// A handler's file range past the end of the file: the connection is
/// aborted once the file runs out, on TLS as on plain TCP, rather than
/// left waiting for bytes that will never come.
#[test]
fn a_file_range_past_the_end_aborts_the_connection_on_tls_and_tcp() {
    let site = TempDir::new("review-short");
    let path = site.write("ten.txt", "0123456789");
    let handler = move |_: Request<Bytes>| {
        let file = std::fs::File::open(&path).unwrap();
        succeed(Response::new(Body::File {
            file,
            range: 5..100,
        }))
    };
    with_tls_server(HttpServer::new(handler.clone()), |open| {
        let (answer, clean) = tls_exchange(open(), &get_closing("/", ""));
        // The abort may drop what was still queued (records not yet
        // written), head included: the client sees less, never a close.
        assert!(b"HTTP/1.1 200 OK\r\n".starts_with(&answer[..answer.len().min(17)]));
        assert!(!clean, "a cut body must not look like a clean close");
    });
    with_server(HttpServer::new(handler), |addr| {
        let mut stream = connect(addr);
        stream.write_all(&get_closing("/", "")).unwrap();
        let mut got = Vec::new();
        let cut = match stream.read_to_end(&mut got) {
            Ok(_) => false,
            Err(err) => err.kind() == ErrorKind::ConnectionReset,
        };
        let (_, body) = split_head(&got);
        assert_eq!(body, b"56789");
        assert!(cut, "a cut body must end with a reset, not an EOF");
    });
}

// ------------------------------------------------------------ half-close

/// A request pipelined behind a large answer waits, undecoded, for the
/// client to read that answer; the client's EOF meanwhile must not drop
/// it ("close once the requests it sent are answered").
#[test]
fn a_request_waiting_behind_a_large_answer_is_answered_after_the_clients_eof() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        let body = match request.uri().path() {
            // Written and finished at once: the whole of it is queued.
            "/big" => Body::stream(|writer| {
                writer.write(vec![b'x'; 8 << 20]);
                writer.finish();
            }),
            _ => Body::from("small"),
        };
        succeed(Response::new(body))
    });
    with_server(server, |addr| {
        let mut stream = connect(addr);
        let mut two = b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        two.extend_from_slice(b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n");
        stream.write_all(&two).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert_eq!(
            text.matches("HTTP/1.1 200 OK").count(),
            2,
            "one answer was dropped"
        );
        assert!(text.ends_with("small"));
    });
}

/// `GET //name` for a folder `name` must not redirect to `//name/`,
/// which a browser reads as the host `name`.
#[test]
fn a_folder_redirect_never_points_to_another_host() {
    let site = TempDir::new("review-redirect");
    std::fs::create_dir(site.path().join("evil.example")).unwrap();
    let files = StaticFiles::new(site.path()).unwrap();
    with_server(HttpServer::new(files), |addr| {
        for path in ["//evil.example", "///evil.example?x=1", "/evil.example"] {
            let answer = exchange(addr, &get_closing(path, ""));
            assert_eq!(status_of(&answer), 301, "{path}: {answer}");
            let location = field(&answer, "location").unwrap();
            assert!(location.starts_with("/evil.example/"), "{path}: {location}");
        }
    });
}

// ------------------------------------------------------------ body writers

/// `abort` on a writer whose body is finished must not touch the
/// connection: it may be carrying the next response by then.
#[test]
fn aborting_a_finished_body_leaves_the_next_response_alone() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        if request.uri().path() == "/stream" {
            return succeed(Response::new(Body::stream(|writer| {
                writer.write("streamed");
                writer.finish();
                // A careless handler's cleanup, later.
                twill::call_later(Duration::from_millis(30), move || writer.abort());
            })));
        }
        let answer = Deferred::new();
        let resolver = answer.resolver();
        twill::call_later(Duration::from_millis(150), move || {
            resolver.callback(Response::new(Body::from("second")));
        });
        answer
    });
    with_server(server, |addr| {
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        stream.write_all(&get_closing("/second", "")).unwrap();
        let mut rest = Vec::new();
        let outcome = stream.read_to_end(&mut rest);
        let rest = String::from_utf8_lossy(&rest);
        assert!(outcome.is_ok(), "{outcome:?} after {rest:?}");
        assert!(rest.ends_with("second"), "{rest}");
    });
}

/// RFC 9110 §8.6: a 304 carries no Content-Length but the length of the
/// content a 200 would have had; `content-length: 0` would make a cache
/// store an empty representation.
#[test]
fn a_304_does_not_claim_an_empty_body_and_keeps_the_connection() {
    let site = TempDir::new("review-304");
    site.write("a.txt", "hello");
    let files = StaticFiles::new(site.path()).unwrap();
    let server = HttpServer::new(move |request: Request<Bytes>| {
        if request.uri().path() == "/declared" {
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
                .headers_mut()
                .insert("content-length", "5".parse().unwrap());
            return succeed(response);
        }
        files.handle(request)
    });
    with_server(server, |addr| {
        let etag = field(&exchange(addr, &get_closing("/a.txt", "")), "etag")
            .unwrap()
            .to_string();
        let mut stream = connect(addr);
        let mut two =
            format!("GET /a.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: {etag}\r\n\r\n").into_bytes();
        two.extend(get_closing("/declared", ""));
        stream.write_all(&two).unwrap();
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        let text = String::from_utf8(got).unwrap();
        let (first, second) = text.split_at(text[1..].find("HTTP/1.1").unwrap() + 1);
        assert_eq!(status_of(first), 304, "{text}");
        assert_eq!(field(first, "content-length"), None, "{first}");
        assert!(first.ends_with("\r\n\r\n"));
        assert_eq!(status_of(second), 304);
        assert_eq!(field(second, "content-length"), Some("5"), "{second}");
        assert!(second.ends_with("\r\n\r\n"));
    });
}

// ------------------------------------------------------------ timeouts, on a clock

/// A head pipelined behind a request whose own head came slowly gets the
/// whole header timeout, not what the earlier head left of it.
#[test]
fn a_pipelined_head_gets_its_own_header_timeout() {
    use twill::task::Clock;
    use twill::testing::StringTransport;
    use twill::Protocol;
    let clock = Clock::new();
    let server = HttpServer::new(|_: Request<Bytes>| succeed(Response::new(Body::from("hi"))))
        .header_timeout(Duration::from_secs(5))
        .clock(std::rc::Rc::new(clock.clone()));
    let mut protocol = server.protocol();
    let recorder = StringTransport::new();
    protocol.connection_made(&recorder.transport());
    protocol.data_received(Bytes::from_static(b"GET / HT"));
    clock.advance(Duration::from_secs(4));
    protocol.data_received(Bytes::from_static(
        b"TP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n",
    ));
    clock.advance(Duration::from_secs(2));
    let answers = String::from_utf8(recorder.value()).unwrap();
    assert!(!answers.contains(" 408 "), "{answers}");
    clock.advance(Duration::from_secs(4));
    let answers = String::from_utf8(recorder.value()).unwrap();
    assert!(answers.contains("HTTP/1.1 408 "), "{answers}");
}

/// `Expect: 100-continue` at exactly `max_body` gets `100 Continue`; one
/// byte more gets `413` at once, with no `100` before it.
#[test]
fn expect_continue_at_the_body_limit() {
    let server = HttpServer::new(|request: Request<Bytes>| {
        succeed(Response::new(Body::from(format!(
            "{}",
            request.body().len()
        ))))
    })
    .max_body(10);
    with_server(server, |addr| {
        let mut stream = connect(addr);
        stream
            .write_all(
                b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\
                  Connection: close\r\n\r\n",
            )
            .unwrap();
        let mut interim = [0; 25];
        stream.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(b"0123456789").unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).unwrap();
        assert_eq!(status_of(&rest), 200);
        assert_eq!(body_of(&rest), "10");

        let answer = exchange(
            addr,
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
        );
        assert_eq!(status_of(&answer), 413, "{answer}");
        assert!(!answer.contains(" 100 "));
    });
}

/// A timeout set to "forever" (`Duration::MAX`) must not overflow the
/// clock: the builders cap it.
#[test]
fn timeouts_of_duration_max_are_capped_not_a_panic() {
    let server = HttpServer::new(|_: Request<Bytes>| succeed(Response::new(Body::from("hi"))))
        .idle_timeout(Duration::MAX)
        .header_timeout(Duration::MAX);
    with_server(server, |addr| {
        let mut stream = connect(addr);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert_eq!(status_of(&answer), 200, "{answer:?}");
    });
}

/// A FIFO in the folder must not be opened: opening one for reading
/// blocks until a writer comes, and that would stop the reactor's thread
/// (every connection) for as long.
#[test]
fn a_fifo_in_the_folder_gets_404_without_blocking_the_reactor() {
    let site = TempDir::new("review-fifo");
    let fifo = site.path().join("pipe.txt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let files = StaticFiles::new(site.path()).unwrap();
    with_server(HttpServer::new(files), move |addr| {
        let mut stream = connect(addr);
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream.write_all(&get_closing("/pipe.txt", "")).unwrap();
        let mut answer = String::new();
        let outcome = stream.read_to_string(&mut answer);
        if outcome.is_err() {
            // Unblocks the reactor's thread, so that the test can end.
            drop(std::fs::OpenOptions::new().write(true).open(&fifo));
            panic!("the reactor's thread was blocked opening a FIFO");
        }
        assert_eq!(status_of(&answer), 404, "{answer}");
    });
}
