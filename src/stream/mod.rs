//! Streams: asyncio's `StreamReader` and `StreamWriter` on twill
//! connections, for code written as `async fn` rather than as a
//! [`Protocol`](crate::Protocol).
//!
//! [`start_server`] runs a task per connection on the reactor's executor
//! (the one [`spawn`](crate::spawn) uses), and [`open_connection`] gives a
//! client its two halves; the same reactor runs protocols, timers and
//! these tasks side by side, on one thread. [`serve`] makes the factory
//! `start_server` listens with, for any other listening method
//! ([`Reactor::listen_tls`](crate::Reactor::listen_tls), a port with a
//! backlog of its own), and [`hand_over`] turns a connection a protocol
//! started on (after a greeting, say) over to a task.
//!
//! A [`StreamReader`] is a `futures` `AsyncRead` and `AsyncBufRead`, and a
//! [`StreamWriter`] an `AsyncWrite`, so crates built on those traits
//! (`futures::io::copy`, TLS and WebSocket crates, compression) run on
//! twill connections. `twill-protocols` turns a reader and a writer into a
//! `Stream` of messages and a `Sink` of replies with any of its codecs.
//!
//! # Memory
//!
//! Both halves bound what a peer can make the server hold. The reader
//! stops reading from the connection when its buffer passes its limit (64
//! KiB), and resumes when the task has read it down; the writer's
//! [`drain`](StreamWriter::drain) (and its `AsyncWrite`) waits while the
//! connection's write buffer is over its high watermark. A task that
//! awaits `drain` after writing holds at most about 64 KiB for a peer that
//! does not read, and one that reads slowly holds at most about 64 KiB
//! more than it asked for, whatever the peer sends.
//!
//! # Lifetime
//!
//! The connection closes (after sending what was written) once the reader
//! and every writer are dropped: when the task returns, or is dropped
//! (cancelled, or the reactor went away). A [`start_server`] or [`serve`]
//! handler that panics fails its connection instead (its
//! `connection_lost` reason is the [`Panicked`](crate::Panicked) error),
//! and the panic is logged; streams in a task of your own
//! ([`spawn`](crate::spawn)) close cleanly when it panics, as when it
//! returns.
//!
//! # Examples
//!
//! An echo server and a client, as asyncio's streams tutorial has them:
//!
//! ```
//! use twill::stream;
//!
//! let reactor = twill::Reactor::new()?;
//! let port = stream::start_server("127.0.0.1:0", |mut reader, writer| async move {
//!     while let Ok(line) = reader.read_line().await {
//!         if line.is_empty() {
//!             break; // the client closed its side
//!         }
//!         writer.write(line);
//!         if writer.drain().await.is_err() {
//!             break;
//!         }
//!     }
//! })?;
//!
//! let addr = port.host();
//! twill::spawn(async move {
//!     let (mut reader, writer) = stream::open_connection(addr).await.unwrap();
//!     writer.write("Hello World!\n");
//!     let echoed = reader.read_line().await.unwrap();
//!     assert_eq!(&echoed[..], b"Hello World!\n");
//!     twill::stop();
//! });
//! reactor.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod closer;
mod error;
mod protocol;
mod reader;
mod shared;
mod writer;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use std::net::ToSocketAddrs;

use crate::net::{Address, ToHostPort, UnixAddress};
use std::rc::Rc;

use crate::defer::{Deferred, Resolver};
use crate::{ClientFactory, Connector, Factory, ListeningPort, Reason, Transport};

pub use error::ReadError;
pub use protocol::StreamReaderProtocol;
pub use reader::StreamReader;
pub use writer::StreamWriter;

/// Connects to `addr` (an IP address and port) and gives the connection's
/// two halves: asyncio's `open_connection`. Runs on the current thread's
/// reactor, with [`Reactor::connect_tcp`](crate::Reactor::connect_tcp)'s
/// 30 s timeout.
///
/// The Deferred fails with the `io::Error` that stopped the connection
/// (refused, timed out, an address that does not resolve); `?` turns its
/// [`Failure`](crate::defer::Failure) back into an `io::Error`.
///
/// # Panics
///
/// If no reactor exists on this thread.
///
/// # Examples
///
/// ```
/// use std::io;
/// use twill::stream;
///
/// async fn ask(addr: twill::Address, question: &str) -> io::Result<String> {
///     let (mut reader, writer) = stream::open_connection(addr).await?;
///     writer.write(format!("{question}\n"));
///     let answer = reader.read_line().await?;
///     Ok(String::from_utf8_lossy(&answer).into_owned())
/// }
///
/// let reactor = twill::Reactor::new()?;
/// let port = stream::start_server("127.0.0.1:0", |mut reader, writer| async move {
///     let _question = reader.read_line().await;
///     writer.write("42\n");
/// })?;
/// let addr = port.host();
/// twill::spawn(async move {
///     assert_eq!(ask(addr, "six times seven?").await.unwrap(), "42\n");
///     twill::stop();
/// });
/// reactor.run()?;
/// # Ok::<(), io::Error>(())
/// ```
pub fn open_connection(addr: impl ToHostPort) -> Deferred<(StreamReader, StreamWriter)> {
    let (factory, connected) = Connecting::new();
    if let Err(err) = crate::reactor().connect_tcp(addr, factory) {
        connected.errback(err);
    }
    connected
}

/// [`open_connection`] over TLS: connects to `addr`, checks that the
/// server is `server_name` with `connector`'s configuration, and gives the
/// two halves once the handshake is done (as asyncio's `open_connection`
/// with `ssl`); reads and writes then go through TLS. A server takes TLS
/// streams with [`serve`] and
/// [`Reactor::listen_tls`](crate::Reactor::listen_tls).
///
/// The Deferred fails with an `io::Error` if the connection or the
/// handshake does: refused, an untrusted or misnamed certificate (the
/// error's text says which), a handshake timeout.
///
/// # Panics
///
/// If no reactor exists on this thread.
///
/// # Examples
///
/// ```
/// use twill::stream;
/// use twill::tls::{config, TlsAcceptor, TlsConnector};
/// # let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// # let certs = config::certs_from_pem(made.cert.pem().as_bytes())?;
/// # let key = config::key_from_pem(made.signing_key.serialize_pem().as_bytes())?;
/// # let acceptor = TlsAcceptor::new(config::server_config(certs.clone(), key)?);
/// # let connector = TlsConnector::new(config::client_config_trusting(certs)?);
///
/// let reactor = twill::Reactor::new()?;
/// let greet = stream::serve(|_reader, writer| async move {
///     // Over TLS, the handler starts once the handshake is done.
///     let version = writer.transport().tls().unwrap().protocol_version.unwrap();
///     writer.write(format!("hello over {version:?}\n"));
/// });
/// let port = reactor.listen_tls("127.0.0.1:0", acceptor, greet)?;
/// let addr = port.host();
/// twill::spawn(async move {
///     let (mut reader, _writer) =
///         stream::open_tls_connection(addr, "localhost", connector).await.unwrap();
///     let line = reader.read_line().await.unwrap();
///     assert!(line.starts_with(b"hello over TLS"));
///     twill::stop();
/// });
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(feature = "tls")]
pub fn open_tls_connection(
    addr: impl ToHostPort,
    server_name: &str,
    connector: impl Into<crate::tls::TlsConnector>,
) -> Deferred<(StreamReader, StreamWriter)> {
    let (factory, connected) = Connecting::new();
    if let Err(err) = crate::reactor().connect_tls(addr, server_name, connector, factory) {
        connected.errback(err);
    }
    connected
}

/// Listens on `addr` and runs `handler(reader, writer)` as a task of its
/// own for each connection: asyncio's `start_server`. Runs on the current
/// thread's reactor; the port listens until
/// [`stop_listening`](ListeningPort::stop_listening) or the reactor
/// stops.
///
/// # Errors
///
/// As [`Reactor::listen_tcp`](crate::Reactor::listen_tcp): the address
/// does not resolve, is taken, or is not this machine's.
///
/// # Panics
///
/// If no reactor exists on this thread.
///
/// # Examples
///
/// See [the module](self#examples).
pub fn start_server<H, F>(addr: impl ToSocketAddrs, handler: H) -> io::Result<ListeningPort>
where
    H: Fn(StreamReader, StreamWriter) -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    crate::reactor().listen_tcp(addr, serve(handler))
}

/// Connects to the Unix domain socket at `address` (a path, or `@name` on
/// Linux) and gives the connection's two halves: asyncio's
/// `open_unix_connection`. Fails as [`open_connection`] does (no such
/// file, refused).
///
/// # Panics
///
/// If no reactor exists on this thread.
///
/// # Examples
///
/// ```
/// use twill::stream;
///
/// let dir = std::env::temp_dir().join(format!("twill-doc-stream-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("hello.sock");
/// let reactor = twill::Reactor::new()?;
/// stream::start_unix_server(&path, |_reader, writer| async move {
///     writer.write("hello\n");
/// })?;
/// twill::spawn(async move {
///     let (mut reader, _writer) = stream::open_unix_connection(&path).await.unwrap();
///     assert_eq!(reader.read_line().await.unwrap(), "hello\n");
///     twill::stop();
/// });
/// reactor.run()?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn open_unix_connection(
    address: impl Into<UnixAddress>,
) -> Deferred<(StreamReader, StreamWriter)> {
    let (factory, connected) = Connecting::new();
    if let Err(err) = crate::reactor().connect_unix(address, factory) {
        connected.errback(err);
    }
    connected
}

/// Listens on the Unix domain socket at `address` (a path, created with
/// mode 0o666 and removed when the port stops, or `@name` on Linux) and
/// runs `handler` for each connection: asyncio's `start_unix_server`.
///
/// # Errors
///
/// As [`Reactor::listen_unix`](crate::Reactor::listen_unix).
///
/// # Panics
///
/// If no reactor exists on this thread.
pub fn start_unix_server<H, F>(
    address: impl Into<UnixAddress>,
    handler: H,
) -> io::Result<ListeningPort>
where
    H: Fn(StreamReader, StreamWriter) -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    crate::reactor().listen_unix(address, crate::net::DEFAULT_UNIX_MODE, serve(handler))
}

/// The factory [`start_server`] listens with: for each connection,
/// `handler(reader, writer)` runs as a task of its own. Give it to any
/// listening method: [`Reactor::listen_tls`](crate::Reactor::listen_tls)
/// for streams over TLS (the handler then starts once the handshake is
/// done, as asyncio's; a failed handshake never reaches it),
/// `listen_tcp_reuse_port` for one reactor per core.
///
/// ```
/// use twill::stream;
///
/// let reactor = twill::Reactor::new()?;
/// let factory = stream::serve(|_reader, writer| async move {
///     writer.write("hello\n");
/// });
/// let port = reactor.listen_tcp("127.0.0.1:0", factory)?;
/// # drop(port);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn serve<H, F>(handler: H) -> StreamFactory
where
    H: Fn(StreamReader, StreamWriter) -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    StreamFactory {
        handler: Rc::new(move |reader, writer| {
            let transport = writer.transport().clone();
            let task = handler(reader, writer);
            // Straight on the executor: this wrapper does what `spawn`'s
            // would (catch and log a panic), and more.
            crate::executor::spawn(async move {
                // While the caught panic's future (and the streams in it)
                // is still alive: the connection fails, rather than close
                // cleanly when they are dropped.
                if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                    let panicked = crate::Panicked::from_payload("a stream handler", &*panic);
                    log::error!(
                        "stream handler for {} panicked: {}; closing that connection",
                        transport.peer(),
                        panicked.message
                    );
                    transport.fail(panicked);
                }
            })
            .detach();
        }),
    }
}

/// Turns a connection a protocol started on over to streams: from the
/// end of the protocol's running callback, the connection's bytes go to
/// the returned [`StreamReader`] (after `unread`, bytes the protocol read
/// and did not use), and the protocol is dropped, with no more callbacks
/// (as asyncio's `transport.set_protocol`). Spawn a task with the two
/// halves to go on. Reading is the reader's from then on: a pause the
/// protocol left (`pause_reading`) is lifted.
///
/// # Errors
///
/// As [`Transport::set_protocol`]: `NotConnected` if the connection is
/// closing, `Unsupported` if the transport cannot change protocols. Over
/// TLS it works as over TCP: the task reads and writes plaintext.
///
/// # Examples
///
/// A protocol that reads a greeting line with callbacks, then hands the
/// connection to an `async` task:
///
/// ```
/// use twill::{stream, Bytes, BytesMut, Protocol, Transport};
///
/// #[derive(Default)]
/// struct Greeting {
///     transport: Option<Transport>,
///     pending: BytesMut,
/// }
///
/// impl Protocol for Greeting {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.transport = Some(transport.clone());
///     }
///
///     fn data_received(&mut self, data: Bytes) {
///         self.pending.extend_from_slice(&data);
///         let Some(end) = self.pending.iter().position(|&b| b == b'\n') else {
///             return;
///         };
///         let greeting = self.pending.split_to(end + 1);
///         let transport = self.transport.as_ref().unwrap();
///         transport.write(format!("hello, {}", String::from_utf8_lossy(&greeting)));
///         match stream::hand_over(transport, &self.pending) {
///             Ok((mut reader, writer)) => twill::spawn(async move {
///                 // From here on: async.
///                 while let Ok(line) = reader.read_line().await {
///                     if line.is_empty() {
///                         break;
///                     }
///                     writer.write(line);
///                 }
///             }),
///             Err(err) => transport.fail(err),
///         }
///     }
/// }
///
/// let reactor = twill::Reactor::new()?;
/// let port = reactor.listen_tcp("127.0.0.1:0", |_| Greeting::default())?;
/// let addr = port.host();
/// twill::spawn(async move {
///     let (mut reader, writer) = stream::open_connection(addr).await.unwrap();
///     writer.write("ada\nfirst\nsecond\n");
///     assert_eq!(&reader.read_line().await.unwrap()[..], b"hello, ada\n");
///     assert_eq!(&reader.read_line().await.unwrap()[..], b"first\n");
///     assert_eq!(&reader.read_line().await.unwrap()[..], b"second\n");
///     twill::stop();
/// });
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn hand_over(transport: &Transport, unread: &[u8]) -> io::Result<(StreamReader, StreamWriter)> {
    let (protocol, reader, writer) = StreamReaderProtocol::for_connection(transport, unread);
    transport.set_protocol(Box::new(protocol))?;
    // Reading is the reader's from now on: a pause the protocol left would
    // never be lifted.
    transport.resume_reading();
    Ok((reader, writer))
}

/// The factory [`serve`] makes.
pub struct StreamFactory {
    handler: Rc<dyn Fn(StreamReader, StreamWriter)>,
}

impl Factory for StreamFactory {
    type Protocol = StreamReaderProtocol;

    fn build_protocol(&mut self, _peer: Address) -> Option<StreamReaderProtocol> {
        let handler = self.handler.clone();
        Some(StreamReaderProtocol::new(Box::new(
            move |reader, writer| handler(reader, writer),
        )))
    }
}

impl std::fmt::Debug for StreamFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamFactory").finish_non_exhaustive()
    }
}

/// The streams a client connection resolves to.
type Connected = Rc<RefCell<Option<Resolver<(StreamReader, StreamWriter)>>>>;

/// [`open_connection`]'s factory: resolves the Deferred with the streams,
/// or fails it with the reason the attempt (or the connection, before its
/// streams were ready) failed.
struct Connecting {
    resolver: Connected,
}

impl Connecting {
    fn new() -> (Connecting, Deferred<(StreamReader, StreamWriter)>) {
        let connected = Deferred::new();
        let resolver = Rc::new(RefCell::new(Some(connected.resolver())));
        (Connecting { resolver }, connected)
    }

    fn fail(&self, error: io::Error) {
        let resolver = self.resolver.borrow_mut().take();
        if let Some(resolver) = resolver {
            resolver.errback(error);
        }
    }
}

impl Factory for Connecting {
    type Protocol = StreamReaderProtocol;

    fn build_protocol(&mut self, _peer: Address) -> Option<StreamReaderProtocol> {
        let resolver = self.resolver.clone();
        Some(StreamReaderProtocol::new(Box::new(
            move |reader, writer| {
                let resolver = resolver.borrow_mut().take();
                if let Some(resolver) = resolver {
                    resolver.callback((reader, writer));
                }
            },
        )))
    }
}

impl ClientFactory for Connecting {
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        self.fail(io::Error::new(reason.kind(), reason.to_string()));
    }

    fn client_connection_lost(&mut self, _connector: &Connector, reason: &Reason) {
        let error = shared::End::of(reason).error().unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before its streams were ready",
            )
        });
        self.fail(error);
    }
}
