//! The reading and writing semantics of `twill::stream` (asyncio's
//! `StreamReader` and `StreamWriter`), over real loopback sockets with
//! blocking peers on threads of their own: what each read returns, waits
//! for and leaves behind; the reader's limit; EOF, resets and refused
//! connections; when a connection closes (the task returning, dropped,
//! panicking, a writer kept); and a protocol handing its connection over
//! to a task.
//!
//! Peers send in steps the test body cues, and a read is shown to wait by
//! polling it again only when the bytes that came woke it: no test sleeps
//! to let bytes arrive.

mod stream_support;

use std::cell::Cell;
use std::future::Future;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures::channel::mpsc as async_mpsc;
use futures::future::{select, Either};
use futures::{poll, StreamExt};
use stream_support::{
    assert_pattern, pattern, poll_when_woken, read_to_end, reset, run, run_on, send, sleep, Cues,
    Ending, Peer, Server,
};
use twill::stream::{self, ReadError, StreamReader, StreamWriter};
use twill::{Bytes, BytesMut, Protocol, Reactor, Transport};

/// A peer that sends each of `parts` on a cue of its own, then closes its
/// writing side on one more cue and reads until the server closes.
fn send_parts_on_cues(addr: SocketAddr, parts: &[&[u8]]) -> Peer<(Vec<u8>, Ending)> {
    let parts: Vec<Vec<u8>> = parts.iter().map(|part| part.to_vec()).collect();
    Peer::connect(addr, move |mut socket, cues| {
        for part in parts {
            cues.wait();
            send(&mut socket, &part);
        }
        cues.wait();
        socket.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut socket)
    })
}

/// Drops the server's streams and gives `peer` (of [`send_parts_on_cues`])
/// its last cue: it shuts its writing side and sees the server's clean
/// close, with nothing more sent.
async fn close_both_sides(peer: Peer<(Vec<u8>, Ending)>, streams: (StreamReader, StreamWriter)) {
    drop(streams);
    peer.cue();
    assert_eq!(peer.outcome().await, (Vec::new(), Ending::Eof));
}

/// Cues `peer` for each of its next `parts` parts, checking that every
/// part but the last leaves `read` waiting; gives the read's result once
/// the last part came.
async fn finish_with_parts<F: Future + Unpin, R: Send + 'static>(
    peer: &Peer<R>,
    read: &mut F,
    parts: usize,
) -> F::Output {
    assert!(poll!(&mut *read).is_pending(), "the read finished early");
    for part in 1..=parts {
        peer.cue();
        match poll_when_woken(read).await {
            Poll::Ready(result) if part == parts => return result,
            Poll::Ready(_) => panic!("the read finished with part {part} of {parts}"),
            Poll::Pending if part == parts => panic!("the last part did not finish the read"),
            Poll::Pending => {}
        }
    }
    unreachable!("no parts")
}

/// Fails the test unless `result` is the `Incomplete` error holding
/// `partial`, for a read that expected `expected`.
#[track_caller]
fn assert_incomplete(result: Result<Bytes, ReadError>, partial: &str, expected: Option<usize>) {
    match result {
        Err(ReadError::Incomplete {
            partial: got,
            expected: got_expected,
        }) => {
            assert_eq!(got, partial.as_bytes());
            assert_eq!(got_expected, expected);
        }
        other => panic!("expected Incomplete with {partial:?}, got {other:?}"),
    }
}

/// Fails the test unless `result` is `LimitOverrun { consumed, limit }`.
#[track_caller]
fn assert_overrun(result: Result<Bytes, ReadError>, consumed: usize, limit: usize) {
    match result {
        Err(ReadError::LimitOverrun {
            consumed: got,
            limit: got_limit,
        }) => assert_eq!((got, got_limit), (consumed, limit)),
        other => panic!(
            "expected LimitOverrun {{ consumed: {consumed}, limit: {limit} }}, got {other:?}"
        ),
    }
}

/// The kind of the `io::Error` inside `result`, failing the test if it
/// holds something else.
#[track_caller]
fn io_error_kind<T: std::fmt::Debug>(result: Result<T, ReadError>) -> ErrorKind {
    match result {
        Err(ReadError::Io(err)) => err.kind(),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- read(n)

#[test]
fn read_gives_what_is_buffered_up_to_max_waits_for_more_and_is_empty_at_eof() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, cues| {
            send(&mut socket, b"hello world");
            cues.wait();
            send(&mut socket, b"!");
            cues.wait();
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = server.accept().await;

        assert_eq!(reader.read(5).await.unwrap(), "hello");
        assert_eq!(reader.buffered(), 6);
        assert_eq!(
            reader.read(100).await.unwrap(),
            " world",
            "no more than is buffered"
        );
        {
            let mut nothing = pin!(reader.read(0));
            match poll!(&mut nothing) {
                Poll::Ready(Ok(empty)) => assert!(empty.is_empty()),
                other => panic!("read(0) should give nothing at once, got {other:?}"),
            }
        }
        {
            let mut next = pin!(reader.read(100));
            let more = finish_with_parts(&peer, &mut next, 1).await;
            assert_eq!(more.unwrap(), "!");
        }
        assert!(!reader.at_eof());
        {
            let mut end = pin!(reader.read(100));
            let end = finish_with_parts(&peer, &mut end, 1).await;
            assert!(end.unwrap().is_empty(), "empty at EOF");
        }
        assert!(reader.at_eof());
        assert!(reader.read(100).await.unwrap().is_empty(), "and again");
        peer.outcome().await;
    });
}

// ------------------------------------------------------------- read_exact

#[test]
fn read_exact_gathers_its_count_from_a_peer_writing_one_byte_at_a_time() {
    const COUNT: usize = 100;
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, cues| {
            for byte in pattern(0, COUNT) {
                cues.wait();
                send(&mut socket, &[byte]);
            }
        });
        let (mut reader, _writer) = server.accept().await;
        let mut read = pin!(reader.read_exact(COUNT));
        let got = finish_with_parts(&peer, &mut read, COUNT).await.unwrap();
        assert_eq!(got.len(), COUNT);
        assert_pattern(0, &got);
        peer.outcome().await;
    });
}

#[test]
fn read_exact_takes_its_count_and_leaves_the_rest_buffered() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"0123456789");
        });
        let (mut reader, _writer) = server.accept().await;
        assert_eq!(reader.read_exact(4).await.unwrap(), "0123");
        assert_eq!(reader.buffered(), 6);
        assert!(reader.read_exact(0).await.unwrap().is_empty());
        assert_eq!(reader.read_exact(6).await.unwrap(), "456789");
        peer.outcome().await;
    });
}

#[test]
fn read_exact_at_eof_is_incomplete_with_the_bytes_that_came() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"abc");
            socket.shutdown(Shutdown::Write).unwrap();
            read_to_end(&mut socket)
        });
        let (mut reader, writer) = server.accept().await;
        let result = reader.read_exact(10).await;
        assert!(
            matches!(&result, Err(err) if err.to_string() == "stream ended after 3 of 10 expected bytes"),
            "{result:?}"
        );
        assert_incomplete(result, "abc", Some(10));
        assert!(reader.at_eof(), "the partial bytes were taken");
        assert!(reader.read(10).await.unwrap().is_empty());
        assert_incomplete(reader.read_exact(1).await, "", Some(1));
        drop((reader, writer));
        assert_eq!(peer.outcome().await, (Vec::new(), Ending::Eof));
    });
}

// ------------------------------------------------------------- read_until

#[test]
fn read_until_finds_a_one_byte_delimiter_that_comes_in_a_later_segment() {
    run(async {
        let mut server = Server::start();
        let peer = send_parts_on_cues(server.addr(), &[b"ab", b"c;de"]);
        let (mut reader, writer) = server.accept().await;
        {
            let mut read = pin!(reader.read_until(b";"));
            assert_eq!(
                finish_with_parts(&peer, &mut read, 2).await.unwrap(),
                "abc;"
            );
        }
        assert_eq!(reader.read(10).await.unwrap(), "de", "what follows stays");
        close_both_sides(peer, (reader, writer)).await;
    });
}

#[test]
fn read_until_finds_a_delimiter_straddling_two_segments() {
    run(async {
        let mut server = Server::start();
        let peer = send_parts_on_cues(server.addr(), &[b"abc\r", b"\nrest"]);
        let (mut reader, writer) = server.accept().await;
        {
            let mut read = pin!(reader.read_until(b"\r\n"));
            let line = finish_with_parts(&peer, &mut read, 2).await.unwrap();
            assert_eq!(line, "abc\r\n", "with the delimiter");
        }
        assert_eq!(reader.read(10).await.unwrap(), "rest");
        close_both_sides(peer, (reader, writer)).await;
    });
}

#[test]
fn read_until_finds_a_delimiter_spread_over_three_segments_after_a_false_start() {
    run(async {
        let mut server = Server::start();
        let peer = send_parts_on_cues(server.addr(), &[b"aaEN", b"EN", b"D!"]);
        let (mut reader, writer) = server.accept().await;
        {
            let mut read = pin!(reader.read_until(b"END"));
            let got = finish_with_parts(&peer, &mut read, 3).await.unwrap();
            assert_eq!(got, "aaENEND");
        }
        assert_eq!(reader.read(10).await.unwrap(), "!");
        close_both_sides(peer, (reader, writer)).await;
    });
}

#[test]
fn read_until_at_eof_without_the_delimiter_is_incomplete_with_what_came() {
    run(async {
        let mut server = Server::start();
        let peer = send_parts_on_cues(server.addr(), &[b"no delimiter"]);
        let (mut reader, writer) = server.accept().await;
        {
            let mut read = pin!(reader.read_until(b";"));
            assert!(poll!(&mut read).is_pending());
            peer.cue();
            assert!(poll_when_woken(&mut read).await.is_pending());
            peer.cue();
            assert_incomplete(read.await, "no delimiter", None);
        }
        assert!(reader.at_eof());
        assert_incomplete(reader.read_until(b";").await, "", None);
        drop((reader, writer));
        assert_eq!(peer.outcome().await, (Vec::new(), Ending::Eof));
    });
}

#[test]
fn an_empty_delimiter_is_invalid_input_at_once() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |_socket, cues| cues.wait());
        let (mut reader, _writer) = server.accept().await;
        {
            let mut read = pin!(reader.read_until(b""));
            match poll!(&mut read) {
                Poll::Ready(result) => assert_eq!(io_error_kind(result), ErrorKind::InvalidInput),
                Poll::Pending => panic!("an empty delimiter waited for bytes"),
            }
        }
        peer.cue();
        peer.outcome().await;
    });
}

// -------------------------------------------------------------- read_line

#[test]
fn read_line_gives_each_line_then_the_last_unfinished_one_then_empty() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"one\ntwo\nthr");
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = server.accept().await;
        assert_eq!(reader.read_line().await.unwrap(), "one\n");
        assert_eq!(reader.read_line().await.unwrap(), "two\n");
        assert_eq!(reader.read_line().await.unwrap(), "thr");
        assert!(reader.at_eof());
        assert!(reader.read_line().await.unwrap().is_empty());
        assert!(reader.read_line().await.unwrap().is_empty());
        peer.outcome().await;
    });
}

// -------------------------------------------------------------- the limit

#[test]
fn the_limit_is_64_kib_by_default_and_at_least_one_byte() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |_socket, _| {});
        let (mut reader, _writer) = server.accept().await;
        assert_eq!(reader.limit(), 64 * 1024);
        reader.set_limit(10);
        assert_eq!(reader.limit(), 10);
        reader.set_limit(0);
        assert_eq!(reader.limit(), 1);
        peer.outcome().await;
    });
}

#[test]
fn no_delimiter_within_the_limit_is_an_overrun_that_leaves_every_byte_buffered() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, cues| {
            send(&mut socket, &[b'x'; 40]);
            cues.wait();
            send(&mut socket, b"tail\n");
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = server.accept().await;
        reader.set_limit(16);
        let overrun = reader.read_line().await;
        let message = overrun.as_ref().map_err(ToString::to_string).unwrap_err();
        assert!(message.contains("limit of 16 bytes"), "{message}");
        assert_overrun(overrun, 40, 16);
        assert_eq!(reader.buffered(), 40, "nothing was taken");
        let again = reader.read_until(b"\n").await;
        assert_eq!(
            io::Error::from(again.unwrap_err()).kind(),
            ErrorKind::InvalidData
        );
        assert_eq!(reader.buffered(), 40, "still nothing taken");

        assert_eq!(reader.read(100).await.unwrap(), &[b'x'; 40][..]);
        peer.cue();
        assert_eq!(reader.read_line().await.unwrap(), "tail\n");
        assert!(reader.read_line().await.unwrap().is_empty());
        peer.outcome().await;
    });
}

#[test]
fn a_delimiter_found_past_the_limit_is_an_overrun_up_to_it_and_nothing_is_lost() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"0123456789ab\nrest\n");
        });
        let (mut reader, _writer) = server.accept().await;
        reader.set_limit(8);
        // `consumed` is how far to read to get past the problem: the
        // delimiter's start.
        assert_overrun(reader.read_line().await, 12, 8);
        assert_eq!(reader.read_exact(13).await.unwrap(), "0123456789ab\n");
        assert_eq!(reader.read_line().await.unwrap(), "rest\n");
        peer.outcome().await;
    });
}

#[test]
fn a_delimiter_right_at_the_limit_is_within_it() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"01234567\n012345678\n");
        });
        let (mut reader, _writer) = server.accept().await;
        reader.set_limit(8);
        assert_eq!(reader.read_line().await.unwrap(), "01234567\n");
        assert_overrun(reader.read_line().await, 9, 8);
        peer.outcome().await;
    });
}

#[test]
fn a_two_byte_delimiter_starting_right_at_the_limit_is_waited_for_not_an_overrun() {
    run(async {
        let mut server = Server::start();
        let peer = send_parts_on_cues(server.addr(), &[b"01234567\r", b"\n"]);
        let (mut reader, writer) = server.accept().await;
        reader.set_limit(8);
        {
            // Nine bytes, past the limit, but the delimiter may still start
            // at the limit.
            let mut read = pin!(reader.read_until(b"\r\n"));
            let line = finish_with_parts(&peer, &mut read, 2).await.unwrap();
            assert_eq!(line, "01234567\r\n");
        }
        close_both_sides(peer, (reader, writer)).await;
    });
}

#[test]
fn raising_the_limit_lets_an_overrun_line_be_read() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"a line longer than eight\n");
        });
        let (mut reader, _writer) = server.accept().await;
        reader.set_limit(8);
        assert!(matches!(
            reader.read_line().await,
            Err(ReadError::LimitOverrun { limit: 8, .. })
        ));
        reader.set_limit(64);
        assert_eq!(
            reader.read_line().await.unwrap(),
            "a line longer than eight\n"
        );
        peer.outcome().await;
    });
}

// ---------------------------------------------------------------- at_eof

#[test]
fn at_eof_only_once_the_peer_ended_and_everything_is_read() {
    run(async {
        let mut server = Server::start();
        let peer = send_parts_on_cues(server.addr(), &[b"last"]);
        let (mut reader, writer) = server.accept().await;
        assert!(!reader.at_eof(), "nothing buffered, but more can come");
        {
            // The bytes, then the EOF.
            let mut read = pin!(reader.read_exact(5));
            assert_incomplete(
                finish_with_parts(&peer, &mut read, 2).await,
                "last",
                Some(5),
            );
        }
        assert!(reader.at_eof());
        drop((reader, writer));
        assert_eq!(peer.outcome().await, (Vec::new(), Ending::Eof));
    });

    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"last\n");
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = server.accept().await;
        // The EOF has come once a read past the buffered bytes sees it.
        assert_eq!(reader.read_line().await.unwrap(), "last\n");
        assert!(reader.read_line().await.unwrap().is_empty());
        assert!(reader.at_eof());
        peer.outcome().await;
    });
}

#[test]
fn at_eof_is_false_while_bytes_remain_after_the_peers_eof() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"one\ntwo");
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = server.accept().await;
        // Waits for the EOF: "two" has no newline.
        assert_eq!(reader.read_line().await.unwrap(), "one\n");
        assert_incomplete(reader.read_exact(4).await, "two", Some(4));
        assert!(reader.at_eof());
        peer.outcome().await;
    });
}

// ---------------------------------------------------------- cancellation

#[test]
fn a_read_dropped_before_it_finished_took_nothing() {
    run(async {
        let mut server = Server::start();
        let peer = send_parts_on_cues(server.addr(), &[b"par", b"tial\nrest", b"!"]);
        let (mut reader, writer) = server.accept().await;
        {
            let mut line = pin!(reader.read_line());
            assert!(poll!(&mut line).is_pending());
            peer.cue();
            assert!(poll_when_woken(&mut line).await.is_pending());
            // Dropped here, with "par" seen.
        }
        {
            let mut exact = pin!(reader.read_exact(100));
            assert!(poll!(&mut exact).is_pending());
            peer.cue();
            assert!(poll_when_woken(&mut exact).await.is_pending());
        }
        assert_eq!(reader.read_line().await.unwrap(), "partial\n");
        {
            let mut exact = pin!(reader.read_exact(5));
            assert_eq!(
                finish_with_parts(&peer, &mut exact, 1).await.unwrap(),
                "rest!"
            );
        }
        close_both_sides(peer, (reader, writer)).await;
    });
}

#[test]
fn a_read_that_loses_a_select_against_a_timer_leaves_its_bytes_for_the_next() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, cues| {
            send(&mut socket, b"no newline yet");
            cues.wait();
            send(&mut socket, b"\n");
        });
        let (mut reader, _writer) = server.accept().await;
        // The bytes are there, the line is not: the timer wins.
        assert_eq!(reader.read_exact(3).await.unwrap(), "no ");
        let timer_won = matches!(
            select(pin!(reader.read_line()), sleep(Duration::from_millis(20))).await,
            Either::Right(_)
        );
        assert!(timer_won, "the line was not sent");
        peer.cue();
        assert_eq!(reader.read_line().await.unwrap(), "newline yet\n");
        peer.outcome().await;
    });
}

// ----------------------------------------------------------------- errors

#[test]
fn after_a_reset_reads_give_the_buffered_bytes_then_connection_reset() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, cues| {
            send(&mut socket, b"line1\nline2");
            cues.wait();
            reset(socket);
        });
        let (mut reader, writer) = server.accept().await;
        assert_eq!(reader.read_line().await.unwrap(), "line1\n");
        {
            let mut line = pin!(reader.read_line());
            assert!(poll!(&mut line).is_pending(), "line2 has no newline");
            peer.cue();
            match poll_when_woken(&mut line).await {
                Poll::Ready(result) => {
                    assert_eq!(io_error_kind(result), ErrorKind::ConnectionReset)
                }
                Poll::Pending => panic!("the reset did not end the read"),
            }
        }
        assert_eq!(reader.buffered(), 5, "line2 stays");
        assert_eq!(reader.read(100).await.unwrap(), "line2");
        assert_eq!(
            io_error_kind(reader.read(100).await),
            ErrorKind::ConnectionReset
        );
        assert_eq!(
            io_error_kind(reader.read_exact(1).await),
            ErrorKind::ConnectionReset
        );
        assert!(!reader.at_eof(), "a reset is not an EOF (asyncio's at_eof)");

        assert!(writer.is_closing());
        writer.write("into the void");
        assert_eq!(
            writer.drain().await.unwrap_err().kind(),
            ErrorKind::ConnectionReset
        );
        assert_eq!(
            writer.wait_closed().await.unwrap_err().kind(),
            ErrorKind::ConnectionReset
        );
        peer.outcome().await;
    });
}

#[test]
fn a_read_error_turns_into_the_matching_io_error_with_the_question_mark() {
    async fn greet(reader: &mut StreamReader) -> io::Result<Bytes> {
        let name = reader.read_line().await?;
        let code = reader.read_exact(8).await?;
        Ok(Bytes::from([&name[..], &code[..]].concat()))
    }

    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| {
            send(&mut socket, b"ada\n1815");
            socket.shutdown(Shutdown::Write).unwrap();
        });
        let (mut reader, _writer) = server.accept().await;
        let err = greet(&mut reader).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        peer.outcome().await;
    });
}

#[test]
fn open_connection_to_a_closed_port_fails_with_connection_refused_through_question_mark() {
    async fn ask(addr: SocketAddr) -> io::Result<Bytes> {
        let (mut reader, writer) = stream::open_connection(addr).await?;
        writer.write("question\n");
        Ok(reader.read_line().await?)
    }

    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let err = run(async move { ask(closed).await.unwrap_err() });
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn open_connection_gives_streams_to_a_plain_tcp_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    run(async move {
        let peer = Peer::accept(listener, |mut socket, _| {
            let mut line = [0; 9];
            io::Read::read_exact(&mut socket, &mut line).unwrap();
            send(&mut socket, b"answer\n");
            socket.shutdown(Shutdown::Write).unwrap();
            (line, read_to_end(&mut socket))
        });
        let (mut reader, writer) = stream::open_connection(addr).await.unwrap();
        assert_eq!(writer.peer(), addr);
        assert_eq!(writer.host().ip(), Some(addr.ip()));
        writer.write("question\n");
        assert_eq!(reader.read_line().await.unwrap(), "answer\n");
        assert!(reader.read_line().await.unwrap().is_empty());
        writer.write("after its EOF\n");
        drop((reader, writer));
        let (question, (rest, ending)) = peer.outcome().await;
        assert_eq!(&question, b"question\n");
        assert_eq!((&rest[..], ending), (&b"after its EOF\n"[..], Ending::Eof));
    });
}

// --------------------------------------------------------------- lifetime

#[test]
fn a_handler_that_returns_closes_cleanly_after_everything_it_wrote_is_sent() {
    const SIZE: usize = 1 << 20;
    run(async {
        let port = stream::start_server("127.0.0.1:0", |_reader, writer| async move {
            // No drain: returning must not lose what is still buffered.
            writer.write(pattern(0, SIZE));
        })
        .unwrap();
        let peer = Peer::connect(port.host().tcp().unwrap(), |mut socket, _| {
            read_to_end(&mut socket)
        });
        let (got, ending) = peer.outcome().await;
        assert_eq!(ending, Ending::Eof);
        assert_eq!(got.len(), SIZE);
        assert_pattern(0, &got);
    });
}

#[test]
fn after_the_peers_eof_the_handler_can_still_write_until_it_returns() {
    run(async {
        let port = stream::start_server("127.0.0.1:0", |mut reader, writer| async move {
            let mut lines = 0;
            while !reader.read_line().await.unwrap().is_empty() {
                lines += 1;
            }
            assert!(!writer.is_closing(), "open for writing after the EOF");
            writer.write(format!("got {lines} lines\n"));
            writer.drain().await.unwrap();
            writer.write("bye\n");
        })
        .unwrap();
        let peer = Peer::connect(port.host().tcp().unwrap(), |mut socket, _| {
            send(&mut socket, b"a\nb\nc\n");
            socket.shutdown(Shutdown::Write).unwrap();
            read_to_end(&mut socket)
        });
        let (got, ending) = peer.outcome().await;
        assert_eq!(String::from_utf8_lossy(&got), "got 3 lines\nbye\n");
        assert_eq!(ending, Ending::Eof);
    });
}

#[test]
fn write_eof_shuts_the_writing_side_and_the_handler_still_reads() {
    run(async {
        let port = stream::start_server("127.0.0.1:0", |mut reader, writer| async move {
            writer.write("question\n");
            writer.write_eof();
            let answer = reader.read_line().await.unwrap();
            assert_eq!(answer, "answer\n");
        })
        .unwrap();
        let peer = Peer::connect(port.host().tcp().unwrap(), |mut socket, _| {
            let question = read_to_end(&mut socket);
            send(&mut socket, b"answer\n");
            socket.shutdown(Shutdown::Write).unwrap();
            (question, read_to_end(&mut socket))
        });
        let ((question, first_end), (after, second_end)) = peer.outcome().await;
        assert_eq!(
            (&question[..], first_end),
            (&b"question\n"[..], Ending::Eof)
        );
        assert_eq!((after, second_end), (Vec::new(), Ending::Eof));
    });
}

#[test]
fn a_task_dropped_by_a_select_its_timer_won_closes_its_connection_cleanly() {
    const SIZE: usize = 100 * 1024;
    run(async {
        let (dropped_tx, mut dropped) = async_mpsc::unbounded();
        let port = stream::start_server("127.0.0.1:0", move |mut reader, writer| {
            let dropped_tx = dropped_tx.clone();
            async move {
                let work = Box::pin(async move {
                    writer.write(pattern(0, SIZE));
                    // The peer never sends a line.
                    let _ = reader.read_line().await;
                });
                let timer = sleep(Duration::from_millis(20));
                // The losing future, holding the streams, is dropped with
                // the select's output.
                let timer_won = matches!(select(work, timer).await, Either::Right(_));
                assert!(timer_won, "the line never comes");
                let _ = dropped_tx.unbounded_send(());
                // The task goes on; only the streams were dropped.
                std::future::pending::<()>().await;
            }
        })
        .unwrap();
        let peer = Peer::connect(port.host().tcp().unwrap(), |mut socket, _| {
            read_to_end(&mut socket)
        });
        dropped.next().await.unwrap();
        let (got, ending) = peer.outcome().await;
        assert_eq!(ending, Ending::Eof);
        assert_eq!(got.len(), SIZE);
        assert_pattern(0, &got);
    });
}

/// Sets its flag when dropped: tells that a task's future was dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn stopping_the_reactor_closes_a_waiting_tasks_connection_cleanly_and_drops_the_task() {
    let reactor = Reactor::new().unwrap();
    let task_dropped = Rc::new(Cell::new(false));
    let flag = task_dropped.clone();
    let port = stream::start_server("127.0.0.1:0", move |mut reader, writer| {
        let guard = DropFlag(flag.clone());
        async move {
            let _guard = guard;
            writer.write("hello\n");
            // Waits for a line that never comes: the reactor's stop ends
            // the stream, and the task then waits on.
            let _ = reader.read_line().await;
            std::future::pending::<()>().await;
        }
    })
    .unwrap();
    let addr = port.host();
    let peer = run_on(&reactor, async move {
        let mut peer = Peer::connect(addr.tcp().unwrap(), |mut socket, cues: &Cues| {
            let mut hello = [0; 6];
            io::Read::read_exact(&mut socket, &mut hello).unwrap();
            cues.note(1);
            (hello, read_to_end(&mut socket))
        });
        peer.note().await;
        // Returning stops the reactor, with the task still waiting.
        peer
    });
    let (hello, (rest, ending)) = peer.join();
    assert_eq!(&hello, b"hello\n");
    assert_eq!((rest, ending), (Vec::new(), Ending::Eof));
    assert!(!task_dropped.get(), "stopped, not yet dropped");
    drop(port);
    drop(reactor);
    assert!(task_dropped.get(), "the reactor's end drops its tasks");
}

#[test]
fn a_panicking_handler_fails_only_its_own_connection() {
    run(async {
        let port = stream::start_server("127.0.0.1:0", |mut reader, writer| async move {
            loop {
                let line = reader.read_line().await.unwrap();
                if line.is_empty() {
                    break;
                }
                if line == "panic\n" {
                    panic!("asked to panic");
                }
                writer.write(line);
            }
        })
        .unwrap();
        let mut steady = Peer::connect(port.host().tcp().unwrap(), |mut socket, cues| {
            send(&mut socket, b"one\n");
            let mut one = [0; 4];
            io::Read::read_exact(&mut socket, &mut one).unwrap();
            assert_eq!(&one, b"one\n");
            cues.note(1);
            cues.wait();
            send(&mut socket, b"two\n");
            socket.shutdown(Shutdown::Write).unwrap();
            read_to_end(&mut socket)
        });
        steady.note().await;

        let panicking = Peer::connect(port.host().tcp().unwrap(), |mut socket, _| {
            send(&mut socket, b"fine\n");
            let mut fine = [0; 5];
            io::Read::read_exact(&mut socket, &mut fine).unwrap();
            assert_eq!(&fine, b"fine\n");
            send(&mut socket, b"panic\n");
            read_to_end(&mut socket)
        });
        // `Transport::fail`: closed as a clean close is, after what was
        // written; the server's side records the failure.
        assert_eq!(panicking.outcome().await, (Vec::new(), Ending::Eof));

        steady.cue();
        assert_eq!(steady.outcome().await, (b"two\n".to_vec(), Ending::Eof));
    });
}

#[test]
fn a_panicking_handler_fails_its_connection_even_while_a_writer_clone_lives() {
    run(async {
        let (kept_tx, mut kept) = futures::channel::mpsc::unbounded();
        let port = stream::start_server("127.0.0.1:0", move |_reader, writer| {
            let kept_tx = kept_tx.clone();
            async move {
                kept_tx.unbounded_send(writer.clone()).unwrap();
                panic!("the handler gives up");
            }
        })
        .unwrap();
        let peer = Peer::connect(port.host().tcp().unwrap(), |mut socket, _| {
            read_to_end(&mut socket)
        });
        let clone = futures::StreamExt::next(&mut kept).await.unwrap();
        // A clone alone would keep the connection open; the panic fails it.
        let err = clone.wait_closed().await.unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(peer.outcome().await, (Vec::new(), Ending::Eof));
    });
}

#[test]
fn a_writer_clone_keeps_the_connection_open_after_the_reader_and_writer_are_dropped() {
    run(async {
        let mut server = Server::start();
        let mut peer = Peer::connect(server.addr(), |mut socket, cues| {
            // Sent to a reader that is gone: thrown away.
            send(&mut socket, b"ignored\n");
            cues.note(1);
            read_to_end(&mut socket)
        });
        let (reader, writer) = server.accept().await;
        let keeper = writer.clone();
        drop(reader);
        drop(writer);
        peer.note().await;
        assert!(!keeper.is_closing());
        keeper.write("late\n");
        keeper.drain().await.unwrap();
        drop(keeper);
        assert_eq!(peer.outcome().await, (b"late\n".to_vec(), Ending::Eof));
    });
}

#[test]
fn close_closes_whoever_else_holds_the_streams_and_wait_closed_sees_a_clean_end() {
    run(async {
        let mut server = Server::start();
        let peer = Peer::connect(server.addr(), |mut socket, _| read_to_end(&mut socket));
        let (mut reader, writer) = server.accept().await;
        writer.write("all of it\n");
        writer.clone().close();
        assert!(writer.is_closing());
        writer.wait_closed().await.unwrap();
        let err = writer.drain().await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::BrokenPipe,
            "nothing more can be sent"
        );
        assert!(
            reader.read(10).await.unwrap().is_empty(),
            "a closed stream ends cleanly"
        );
        assert_eq!(peer.outcome().await, (b"all of it\n".to_vec(), Ending::Eof));
    });
}

// -------------------------------------------------------------- hand_over

/// Reads a greeting line with callbacks, answers it, then hands the
/// connection (with what came after the greeting) to a task that echoes
/// lines in capitals until the peer's EOF.
#[derive(Default)]
struct Greeting {
    transport: Option<Transport>,
    pending: BytesMut,
}

impl Protocol for Greeting {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        self.pending.extend_from_slice(&data);
        let Some(end) = self.pending.iter().position(|&b| b == b'\n') else {
            return;
        };
        let greeting = self.pending.split_to(end + 1);
        let transport = self.transport.as_ref().unwrap();
        transport.write(format!("hello, {}", String::from_utf8_lossy(&greeting)));
        let (reader, writer) = stream::hand_over(transport, &self.pending).unwrap();
        twill::spawn(shout(reader, writer));
    }
}

async fn shout(mut reader: StreamReader, writer: StreamWriter) {
    loop {
        let line = reader.read_line().await.unwrap();
        if line.is_empty() {
            break;
        }
        writer.write(line.to_ascii_uppercase());
    }
    writer.write("bye\n");
}

#[test]
fn hand_over_gives_the_task_the_bytes_after_the_greeting_then_the_rest_in_order() {
    run(async {
        let port = twill::reactor()
            .listen_tcp("127.0.0.1:0", |_| Greeting::default())
            .unwrap();
        let peer = Peer::connect(port.host().tcp().unwrap(), |mut socket, _| {
            // The greeting and the task's first bytes in one segment.
            send(&mut socket, b"ada\nfirst\nsec");
            let mut hello = [0; 11];
            io::Read::read_exact(&mut socket, &mut hello).unwrap();
            send(&mut socket, b"ond\nthird\n");
            socket.shutdown(Shutdown::Write).unwrap();
            (hello, read_to_end(&mut socket))
        });
        let (hello, (rest, ending)) = peer.outcome().await;
        assert_eq!(&hello, b"hello, ada\n");
        assert_eq!(
            String::from_utf8_lossy(&rest),
            "FIRST\nSECOND\nTHIRD\nbye\n"
        );
        assert_eq!(ending, Ending::Eof);
    });
}

/// Closes its connection, then tries to hand it over.
struct HandsOverTooLate(async_mpsc::UnboundedSender<io::ErrorKind>);

impl Protocol for HandsOverTooLate {
    fn connection_made(&mut self, transport: &Transport) {
        transport.lose_connection();
        let kind = stream::hand_over(transport, b"")
            .map(drop)
            .unwrap_err()
            .kind();
        let _ = self.0.unbounded_send(kind);
    }

    fn data_received(&mut self, _data: Bytes) {}
}

#[test]
fn hand_over_of_a_closing_connection_is_not_connected() {
    run(async {
        let (tx, mut kinds) = async_mpsc::unbounded();
        let port = twill::reactor()
            .listen_tcp("127.0.0.1:0", move |_| HandsOverTooLate(tx.clone()))
            .unwrap();
        let peer = Peer::connect(port.host().tcp().unwrap(), |mut socket, _| {
            read_to_end(&mut socket)
        });
        assert_eq!(kinds.next().await.unwrap(), ErrorKind::NotConnected);
        assert_eq!(peer.outcome().await, (Vec::new(), Ending::Eof));
    });
}
