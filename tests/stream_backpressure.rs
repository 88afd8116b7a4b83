//! Memory and flow with `twill::stream`, over real loopback sockets: a
//! reader that does not read holds at most its limit plus one read and
//! stalls a peer that floods it; a writer that awaits `drain` (or writes
//! through `AsyncWrite`) to a peer that does not read waits, with the
//! connection's write buffer near its high watermark, and goes on once
//! the peer reads; a read that needs more than the limit is not starved by
//! the pause. Every byte is checked against a pattern.
//!
//! The figures asserted are the server's own (`buffered`,
//! `write_buffer_size`), so they do not depend on the kernel's buffer
//! sizes; the peers that do not read have a 4 KiB receive buffer.

mod stream_support;

use std::cell::Cell;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::io::AsyncWriteExt;
use stream_support::{assert_pattern, fill_pattern, pattern, run, send, Peer, Server, WAIT};
use twill::defer::Deferred;
use twill::stream::{StreamReader, StreamWriter};
use twill::transport::DEFAULT_HIGH_WATERMARK;
use twill::Transport;
use twill_test_support::pressure::{
    connect_small, mib, read_expected, send_until_stalled, when_stuck, SMALL_RCVBUF,
};

/// The most the reactor reads from a socket at once (`READ_BUFFER_SIZE`
/// and `DIRECT_READ_MAX` in the reactor): what the reader may hold past
/// its limit.
const READ_MAX: usize = 64 * 1024;

/// How much a flooding peer offers; it stalls long before.
const FLOOD: u64 = 256 << 20;

/// How long a write must make no progress for the flooding peer to count
/// itself stalled.
const STALL: Duration = Duration::from_millis(300);

/// Fires once `transport`'s write buffer holds bytes and nothing more has
/// left for a while: the peer is not reading.
fn stuck(transport: &Transport) -> Deferred<()> {
    let stuck = Deferred::new();
    let resolver = stuck.resolver();
    when_stuck(transport.clone(), move || resolver.callback(()));
    stuck
}

/// Reads `reader` to its end, checking each chunk against the pattern and
/// that the reader never holds more than its limit plus one read; gives
/// how many bytes came.
async fn read_all_checked(reader: &mut StreamReader) -> u64 {
    let bound = reader.limit() + READ_MAX;
    let mut at = 0u64;
    loop {
        let chunk = reader.read(16 * 1024).await.expect("a clean stream");
        if chunk.is_empty() {
            return at;
        }
        assert_pattern(at, &chunk);
        at += chunk.len() as u64;
        assert!(
            reader.buffered() <= bound,
            "the reader holds {} bytes, over its limit {} plus one read",
            reader.buffered(),
            reader.limit()
        );
    }
}

/// A peer that floods the server with the pattern until its writes stall,
/// reports how much got through, then on a cue closes its writing side.
fn flood_until_stalled(server: &Server) -> Peer<()> {
    let socket = twill_test_support::pressure::connect(server.addr());
    Peer::on(socket, |mut socket, cues| {
        let sent = send_until_stalled(&mut socket, FLOOD, STALL, fill_pattern);
        cues.note(sent);
        cues.wait();
        socket.shutdown(Shutdown::Write).unwrap();
    })
}

/// Floods a reader whose limit is `limit` (the default if `None`) and that
/// reads nothing until the peer stalled; then reads it all.
fn flood_a_reader_that_waits(limit: Option<usize>) {
    run(async move {
        let mut server = Server::start();
        let mut peer = flood_until_stalled(&server);
        let (mut reader, _writer) = server.accept().await;
        if let Some(limit) = limit {
            reader.set_limit(limit);
        }
        // The task waits on the peer, reading nothing.
        let sent = peer.note().await;
        assert!(
            sent < FLOOD / 4,
            "{:.1} MiB got through: the server kept reading",
            mib(sent)
        );
        let held = reader.buffered();
        assert!(
            held <= reader.limit() + READ_MAX,
            "a reader with a limit of {} holds {held} bytes",
            reader.limit()
        );
        assert!(
            held > reader.limit(),
            "it read up to its limit before pausing ({held} bytes)"
        );

        peer.cue();
        assert_eq!(read_all_checked(&mut reader).await, sent);
        peer.outcome().await;
    });
}

#[test]
fn a_reader_that_does_not_read_holds_at_most_its_limit_plus_one_read_and_stalls_the_peer() {
    flood_a_reader_that_waits(None);
}

#[test]
fn a_small_limit_bounds_what_a_reader_that_does_not_read_holds() {
    flood_a_reader_that_waits(Some(4 * 1024));
}

#[test]
fn a_read_exact_far_larger_than_the_limit_completes() {
    const SIZE: usize = 4 << 20;
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, &pattern(0, SIZE));
            send(&mut socket, b"after");
        });
        let (mut reader, _writer) = server.accept().await;
        reader.set_limit(1024);
        let got = reader.read_exact(SIZE).await.unwrap();
        assert_eq!(got.len(), SIZE);
        assert_pattern(0, &got);
        assert_eq!(reader.read_exact(5).await.unwrap(), "after");
        peer.outcome().await;
    });
}

/// How much the writing task wrote and the most the connection's write
/// buffer held right after one of its writes.
#[derive(Default)]
struct Progress {
    written: Cell<u64>,
    peak_buffer: Cell<usize>,
    done: Cell<bool>,
}

impl Progress {
    fn wrote(&self, len: usize, transport: &Transport) {
        self.written.set(self.written.get() + len as u64);
        let buffered = transport.write_buffer_size();
        self.peak_buffer.set(self.peak_buffer.get().max(buffered));
    }
}

/// Bytes written per write by the writing tasks.
const CHUNK: usize = 16 * 1024;

/// What the writing tasks send in all: well past what the kernel buffers
/// for a peer that does not read (a few MiB on loopback).
const TOTAL: u64 = 16 << 20;

/// Runs a server whose task sends [`TOTAL`] bytes of the pattern with
/// `write_all_of` to a peer that reads nothing until cued, and checks that
/// the task waits while the peer is stalled, with the write buffer near
/// its high watermark, then finishes once the peer reads, every byte
/// arriving.
fn write_to_a_peer_that_does_not_read<F>(write_all_of: fn(StreamWriter, Rc<Progress>) -> F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    run(async move {
        let mut server = Server::start();
        let peer = Peer::on(
            connect_small(server.addr(), SMALL_RCVBUF),
            |mut socket, cues| {
                cues.wait();
                let deadline = Instant::now() + WAIT;
                read_expected(&mut socket, 0, TOTAL, deadline, fill_pattern, |_| {});
                let mut rest = Vec::new();
                std::io::Read::read_to_end(&mut socket, &mut rest).unwrap();
                rest.len()
            },
        );
        let (reader, writer) = server.accept().await;
        // The task's writer alone keeps the connection open: it closes
        // when the task is done.
        drop(reader);
        let transport = writer.transport().clone();
        let progress = Rc::new(Progress::default());
        twill::spawn(write_all_of(writer, progress.clone()));

        stuck(&transport).await.unwrap();
        let written = progress.written.get();
        assert!(
            written < TOTAL,
            "everything was written to a peer that reads nothing"
        );
        assert!(
            transport.write_buffer_size() <= DEFAULT_HIGH_WATERMARK + CHUNK,
            "the write buffer holds {} bytes",
            transport.write_buffer_size()
        );
        // Still stuck a while later, and the task is still waiting.
        stuck(&transport).await.unwrap();
        assert_eq!(
            progress.written.get(),
            written,
            "the task went on writing while the peer was stalled"
        );
        assert!(!progress.done.get());

        peer.cue();
        assert_eq!(peer.outcome().await, 0, "nothing past the pattern");
        assert!(progress.done.get());
        assert_eq!(progress.written.get(), TOTAL);
        assert!(
            progress.peak_buffer.get() <= DEFAULT_HIGH_WATERMARK + CHUNK,
            "the write buffer reached {} bytes",
            progress.peak_buffer.get()
        );
    });
}

#[test]
fn a_writer_to_a_peer_that_does_not_read_waits_in_drain_and_resumes_when_it_reads() {
    write_to_a_peer_that_does_not_read(|writer, progress| async move {
        let mut at = 0;
        while at < TOTAL {
            writer.write(pattern(at, CHUNK));
            progress.wrote(CHUNK, writer.transport());
            at += CHUNK as u64;
            writer.drain().await.unwrap();
        }
        progress.done.set(true);
    });
}

#[test]
fn async_write_all_to_a_peer_that_does_not_read_waits_and_resumes_when_it_reads() {
    write_to_a_peer_that_does_not_read(|mut writer, progress| async move {
        let mut at = 0;
        while at < TOTAL {
            writer.write_all(&pattern(at, CHUNK)).await.unwrap();
            progress.wrote(CHUNK, writer.transport());
            at += CHUNK as u64;
        }
        // AsyncWrite's close: the FIN, after everything (the inherent
        // `close` would close the whole connection).
        AsyncWriteExt::close(&mut writer).await.unwrap();
        progress.done.set(true);
    });
}

#[test]
fn one_async_write_all_larger_than_the_write_buffer_cap_arrives_whole() {
    const SIZE: usize = 32 << 20;
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            let deadline = Instant::now() + WAIT;
            read_expected(&mut socket, 0, SIZE as u64, deadline, fill_pattern, |_| {});
        });
        let (_reader, mut writer) = server.accept().await;
        let data = pattern(0, SIZE);
        writer.write_all(&data).await.unwrap();
        assert!(
            writer.transport().write_buffer_size() <= DEFAULT_HIGH_WATERMARK + READ_MAX,
            "write_all queued {:.1} MiB at once",
            mib(writer.transport().write_buffer_size() as u64)
        );
        AsyncWriteExt::close(&mut writer).await.unwrap();
        peer.outcome().await;
    });
}
