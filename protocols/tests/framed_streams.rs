//! `FramedRead` and `FramedWrite`: the codecs of this crate as a `Stream`
//! of messages and a `Sink` of replies over a twill connection's
//! `StreamReader` and `StreamWriter`, against real clients on loopback.
//!
//! What they promise: messages come out whole and in order however the
//! bytes were cut; a recoverable error (a frame too long) is reported and
//! the stream goes on, any other ends it; leftover bytes at EOF are
//! reported, not dropped; a frame larger than the reader's limit still
//! arrives; `send` waits while the peer does not read, with the write
//! buffer bounded, and nothing is lost; a message that cannot be encoded
//! is an error with nothing written, and the connection goes on.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::mpsc;

use futures::{SinkExt, StreamExt};
use twill::stream::{self, StreamReader, StreamWriter};
use twill::{Bytes, Reactor};
use twill_protocols::codec::{
    DecodeError, Decoder, EncodeError, FramedRead, FramedWrite, LengthFieldBasedFrameDecoder,
    LengthFieldPrepender, LineBasedFrameDecoder, LineEncoder, StringDecoder,
};
use twill_test_support::pressure::when_stuck;
use twill_test_support::reactor::{connect, serve};

/// What a server task saw: each message or error, as text, then `end`.
type Seen = Rc<RefCell<Vec<String>>>;

/// Lines of at most 8 bytes, as `String`s.
fn short_lines(reader: StreamReader) -> FramedRead<impl Decoder<Item = String> + Unpin> {
    FramedRead::new(
        reader,
        LineBasedFrameDecoder::new(8).and_then(StringDecoder),
    )
}

/// Runs `handler` for one connection, `client` on a thread, and returns
/// what the handler recorded; the reactor stops when the handler is done.
fn with_server<F>(
    handler: impl Fn(StreamReader, StreamWriter, Seen) -> F + 'static,
    client: impl FnOnce(TcpStream) + Send + 'static,
) -> Vec<String>
where
    F: std::future::Future<Output = ()> + 'static,
{
    let reactor = Reactor::new().unwrap();
    let seen: Seen = Rc::default();
    let record = seen.clone();
    let factory = stream::serve(move |reader, writer| {
        let task = handler(reader, writer, record.clone());
        async move {
            task.await;
            twill::stop();
        }
    });
    serve(&reactor, factory, |addr, _| client(connect(addr)));
    let seen = seen.borrow().clone();
    seen
}

/// Records every item of `messages` until it ends.
async fn record_all(mut messages: FramedRead<impl Decoder<Item = String> + Unpin>, seen: Seen) {
    while let Some(item) = messages.next().await {
        let text = match item {
            Ok(line) => line,
            Err(err) => format!("error: {err}"),
        };
        seen.borrow_mut().push(text);
    }
    seen.borrow_mut().push("end".to_owned());
}

#[test]
fn messages_cut_anywhere_come_out_whole_and_in_order() {
    let seen = with_server(
        |reader, _writer, seen| record_all(short_lines(reader), seen),
        |mut client| {
            for byte in b"one\ntwo\r\nthree\n" {
                client.write_all(&[*byte]).unwrap();
            }
            client.write_all(b"four\nfive\nsix\n").unwrap();
        },
    );
    assert_eq!(seen, ["one", "two", "three", "four", "five", "six", "end"]);
}

#[test]
fn a_frame_too_long_is_an_error_and_the_stream_goes_on() {
    let seen = with_server(
        |reader, _writer, seen| record_all(short_lines(reader), seen),
        |mut client| client.write_all(b"before\nmuch too long\nafter\n").unwrap(),
    );
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], "before");
    assert!(seen[1].starts_with("error: frame length"), "{seen:?}");
    assert_eq!(seen[2..], ["after", "end"]);
}

#[test]
fn input_that_is_not_utf8_ends_the_stream_after_its_error() {
    let seen = with_server(
        |reader, _writer, seen| record_all(short_lines(reader), seen),
        |mut client| client.write_all(b"fine\n\xff\xfe\nunseen\n").unwrap(),
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], "fine");
    assert!(seen[1].contains("not valid UTF-8"), "{seen:?}");
    assert_eq!(seen[2], "end");
}

#[test]
fn bytes_left_at_eof_are_reported_truncated_then_the_stream_ends() {
    let seen = with_server(
        |reader, _writer, seen| async move {
            // One length byte, then the body.
            let decoder = LengthFieldBasedFrameDecoder::new(64, 0, 1, 0, 1).unwrap();
            let mut frames = FramedRead::new(reader, decoder);
            while let Some(item) = frames.next().await {
                seen.borrow_mut().push(match item {
                    Ok(frame) => String::from_utf8_lossy(&frame).into_owned(),
                    Err(err) => format!("error: {err}"),
                });
            }
            seen.borrow_mut().push("end".to_owned());
        },
        |mut client| {
            client.write_all(b"\x05whole\x04ha").unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
        },
    );
    assert_eq!(
        seen,
        [
            "whole",
            "error: connection closed with 3 bytes of an unfinished frame",
            "end"
        ]
    );
}

#[test]
fn a_reset_connection_ends_the_stream_with_an_io_error() {
    let seen = with_server(
        |reader, _writer, seen| record_all(short_lines(reader), seen),
        |mut client| {
            client.write_all(b"last\n").unwrap();
            socket2::SockRef::from(&client)
                .set_linger(Some(std::time::Duration::ZERO))
                .unwrap();
        },
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], "last");
    assert!(seen[1].starts_with("error: reading failed"), "{seen:?}");
    assert_eq!(seen[2], "end");
}

#[test]
fn a_frame_larger_than_the_reader_limit_arrives_whole() {
    const BODY: usize = 1 << 20;
    let seen = with_server(
        |reader, _writer, seen| async move {
            assert!(reader.limit() < BODY);
            let decoder = LengthFieldBasedFrameDecoder::new(2 * BODY, 0, 4, 0, 4).unwrap();
            let mut frames = FramedRead::new(reader, decoder);
            let frame = frames.next().await.unwrap().unwrap();
            let expected: Vec<u8> = (0..BODY).map(|i| (i % 251) as u8).collect();
            assert!(frame[..] == expected[..], "the frame's bytes differ");
            seen.borrow_mut().push(format!("{} bytes", frame.len()));
        },
        |mut client| {
            let body: Vec<u8> = (0..BODY).map(|i| (i % 251) as u8).collect();
            client.write_all(&(BODY as u32).to_be_bytes()).unwrap();
            for piece in body.chunks(1000) {
                client.write_all(piece).unwrap();
            }
        },
    );
    assert_eq!(seen, [format!("{BODY} bytes")]);
}

#[test]
fn send_waits_while_the_peer_does_not_read_and_nothing_is_lost() {
    const MESSAGES: usize = 4096;
    const SIZE: usize = 1024;
    let (stuck_tx, stuck_rx) = mpsc::channel::<()>();
    let seen = with_server(
        move |_reader, writer, seen| {
            let stuck_tx = stuck_tx.clone();
            async move {
                let transport = writer.transport().clone();
                when_stuck(transport.clone(), move || stuck_tx.send(()).unwrap());
                let (high, _) = transport.write_buffer_limits();
                let mut sink = FramedWrite::new(writer, LengthFieldPrepender::new(4).unwrap());
                let mut most = 0;
                for i in 0..MESSAGES {
                    sink.send(Bytes::from(vec![(i % 256) as u8; SIZE]))
                        .await
                        .unwrap();
                    most = most.max(transport.write_buffer_size());
                }
                assert!(
                    most <= high + SIZE + 4,
                    "write buffer reached {most} bytes (high watermark {high})"
                );
                SinkExt::<Bytes>::close(&mut sink).await.unwrap();
                seen.borrow_mut()
                    .push(format!("sent, at most {most} buffered"));
            }
        },
        move |mut client| {
            stuck_rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("the server never saw the peer stop reading");
            let mut received = Vec::new();
            client.read_to_end(&mut received).unwrap();
            assert_eq!(received.len(), MESSAGES * (SIZE + 4));
            for (i, frame) in received.chunks(SIZE + 4).enumerate() {
                assert_eq!(frame[..4], (SIZE as u32).to_be_bytes());
                assert!(
                    frame[4..].iter().all(|&b| b == (i % 256) as u8),
                    "frame {i}"
                );
            }
        },
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[test]
fn a_message_that_cannot_be_encoded_writes_nothing_and_the_connection_goes_on() {
    let seen = with_server(
        |_reader, writer, seen| async move {
            // A one-byte length field carries at most 255 bytes.
            let mut sink = FramedWrite::new(writer, LengthFieldPrepender::new(1).unwrap());
            sink.send(Bytes::from_static(b"ok")).await.unwrap();
            match sink.send(Bytes::from(vec![0; 300])).await {
                Err(EncodeError::TooLong { length, max }) => seen
                    .borrow_mut()
                    .push(format!("too long: {length} > {max}")),
                other => panic!("expected TooLong, got {other:?}"),
            }
            sink.send(Bytes::from_static(b"still")).await.unwrap();
        },
        |mut client| {
            let mut received = Vec::new();
            client.read_to_end(&mut received).unwrap();
            assert_eq!(received, b"\x02ok\x05still");
        },
    );
    assert_eq!(seen, ["too long: 300 > 255"]);
}

#[test]
fn replies_go_out_with_the_line_encoder_and_close_shuts_the_writing_side() {
    let seen = with_server(
        |reader, writer, seen| async move {
            let mut lines = short_lines(reader);
            let mut replies = FramedWrite::new(writer, LineEncoder::crlf());
            while let Some(Ok(line)) = lines.next().await {
                replies.send(line.to_uppercase()).await.unwrap();
            }
            SinkExt::<String>::close(&mut replies).await.unwrap();
            seen.borrow_mut().push("closed".to_owned());
        },
        |mut client| {
            client.write_all(b"abc\ndef\n").unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut received = Vec::new();
            client.read_to_end(&mut received).unwrap();
            assert_eq!(received, b"ABC\r\nDEF\r\n");
        },
    );
    assert_eq!(seen, ["closed"]);
}

#[test]
fn a_decode_error_on_a_connection_does_not_touch_the_others() {
    // Two clients; the first sends garbage and is dropped by its task, the
    // second is served to the end.
    let reactor = Reactor::new().unwrap();
    let served = Rc::new(RefCell::new(Vec::new()));
    let record = served.clone();
    let factory = stream::serve(move |reader, writer| {
        let record = record.clone();
        async move {
            let mut lines = short_lines(reader);
            let mut replies = FramedWrite::new(writer, LineEncoder::new());
            while let Some(item) = lines.next().await {
                match item {
                    Ok(line) => replies.send(format!("got {line}")).await.unwrap(),
                    Err(err) if err.is_recoverable() => {}
                    Err(DecodeError::Utf8(_)) => {
                        record.borrow_mut().push("dropped a client".to_owned());
                        return;
                    }
                    Err(err) => panic!("unexpected {err}"),
                }
            }
            record.borrow_mut().push("served a client".to_owned());
            if record.borrow().len() == 2 {
                twill::stop();
            }
        }
    });
    serve(&reactor, factory, |addr, _| {
        let mut bad = connect(addr);
        let mut good = connect(addr);
        bad.write_all(b"\xff\n").unwrap();
        let mut nothing = Vec::new();
        bad.read_to_end(&mut nothing).unwrap();
        assert!(nothing.is_empty());
        good.write_all(b"hello\n").unwrap();
        let mut reply = [0; 10];
        good.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"got hello\n");
    });
    assert_eq!(*served.borrow(), ["dropped a client", "served a client"]);
}
