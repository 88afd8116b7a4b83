//! The WebSocket codecs: RFC 6455's examples, every error with its close
//! code, the masking rules both ways, limits checked from the header,
//! fragmentation, split points and arbitrary input.

#![cfg(feature = "websocket")]

mod support;

use bytes::{BufMut, Bytes, BytesMut};
use support::{same_at_every_split, Event, XorShift};
use twill_protocols::codec::{DecodeError, Decoder, Encoder};
use twill_protocols::websocket::{
    accept_key, apply_mask, check_request, check_response, generate_key, is_valid_key, Frame,
    FrameCodec, HandshakeError, Message, MessageCodec, OpCode, Received, Role, SessionState,
    WebSocketError, WebSocketSession,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as a peer would write it: `first` is the FIN/RSV/opcode byte,
/// masked with `mask` if any, the length in its shortest form.
fn wire(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(first);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.put_u8(bit | payload.len() as u8);
    } else if payload.len() <= 0xffff {
        out.put_u8(bit | 126);
        out.put_u16(payload.len() as u16);
    } else {
        out.put_u8(bit | 127);
        out.put_u64(payload.len() as u64);
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let body = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[body..], key, 0);
    }
    out.to_vec()
}

/// A frame from a client (masked).
fn from_client(first: u8, payload: &[u8]) -> Vec<u8> {
    wire(first, payload, Some(KEY))
}

fn code_of(result: Result<impl std::fmt::Debug, DecodeError>) -> u16 {
    let err = result.expect_err("an error");
    WebSocketError::code_of(&err).unwrap_or_else(|| panic!("not a WebSocket error: {err}"))
}

/// The close code of the first error decoding `input` whole.
fn message_error(role: Role, input: &[u8]) -> u16 {
    let mut codec = MessageCodec::new(role);
    let mut buffer = BytesMut::from(input);
    loop {
        match codec.decode(&mut buffer) {
            Ok(Some(_)) => continue,
            other => return code_of(other),
        }
    }
}

fn frame(fin: bool, opcode: OpCode, payload: &'static [u8]) -> Frame {
    Frame {
        fin,
        opcode,
        payload: Bytes::from_static(payload),
    }
}

fn frames(role: Role, input: &[u8]) -> Vec<Event<Frame>> {
    same_at_every_split(&FrameCodec::new(role), input)
}

// ---- RFC 6455's examples (section 5.7) ----

#[test]
fn single_frame_unmasked_text() {
    let input = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        frames(Role::Client, &input),
        [Event::Frame(frame(true, OpCode::Text, b"Hello"))]
    );
    let mut out = BytesMut::new();
    FrameCodec::new(Role::Server)
        .encode(Frame::new(OpCode::Text, "Hello"), &mut out)
        .unwrap();
    assert_eq!(&out[..], input);
}

#[test]
fn single_frame_masked_text() {
    let input = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        frames(Role::Server, &input),
        [Event::Frame(frame(true, OpCode::Text, b"Hello"))]
    );
    assert_eq!(from_client(0x81, b"Hello"), input);
}

#[test]
fn fragmented_unmasked_text() {
    let input = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(
        frames(Role::Client, &input),
        [
            Event::Frame(frame(false, OpCode::Text, b"Hel")),
            Event::Frame(frame(true, OpCode::Continuation, b"lo")),
        ]
    );
    assert_eq!(
        same_at_every_split(&MessageCodec::new(Role::Client), &input),
        [Event::Frame(Message::Text("Hello".into()))]
    );
}

#[test]
fn ping_and_pong() {
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        same_at_every_split(&MessageCodec::new(Role::Client), &ping),
        [Event::Frame(Message::Ping("Hello".into()))]
    );
    assert_eq!(
        same_at_every_split(&MessageCodec::new(Role::Server), &pong),
        [Event::Frame(Message::Pong("Hello".into()))]
    );
}

#[test]
fn binary_256_bytes_and_64_kib() {
    let small: Vec<u8> = (0..=255).collect();
    let mut input = vec![0x82, 0x7e, 0x01, 0x00];
    input.extend_from_slice(&small);
    assert_eq!(
        frames(Role::Client, &input),
        [Event::Frame(Frame::new(OpCode::Binary, small.clone()))]
    );

    let big: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
    let mut input = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
    input.extend_from_slice(&big);
    let mut codec = FrameCodec::new(Role::Client);
    let mut buffer = BytesMut::from(&input[..]);
    assert_eq!(
        codec.decode(&mut buffer).unwrap(),
        Some(Frame::new(OpCode::Binary, big.clone()))
    );
    // The server's encoder writes the same header and hands the payload
    // over without copying it.
    let payload = Bytes::from(big);
    let mut head = BytesMut::new();
    let tail = FrameCodec::new(Role::Server)
        .encode_parts(Frame::new(OpCode::Binary, payload.clone()), &mut head)
        .unwrap()
        .unwrap();
    assert_eq!(&head[..], &input[..10]);
    assert_eq!(tail.as_ptr(), payload.as_ptr());
}

// ---- the opening handshake ----

#[test]
fn handshake_example() {
    // RFC 6455 section 1.3's example.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
    assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ")); // no padding
    assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZXg=")); // 17 bytes
    assert!(!is_valid_key("aGVsbG8="));
    assert!(!is_valid_key("!!!!!!!!!!!!!!!!!!!!!!=="));
    let key = generate_key();
    assert!(is_valid_key(&key), "{key}");
    assert_ne!(generate_key(), key);
}

#[test]
fn handshake_request_headers() {
    let good = [
        ("host", "example.com"),
        ("UPGRADE", "WebSocket"),
        ("connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("sec-websocket-key", " dGhlIHNhbXBsZSBub25jZQ== "),
    ];
    assert_eq!(
        check_request(&good).unwrap(),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    let without = |skip: &str| -> Vec<(&str, &str)> {
        good.iter()
            .copied()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(skip))
            .collect()
    };
    assert_eq!(
        check_request(&without("upgrade")),
        Err(HandshakeError::NotAnUpgrade)
    );
    assert_eq!(
        check_request(&without("connection")),
        Err(HandshakeError::NoConnectionUpgrade)
    );
    assert_eq!(
        check_request(&without("sec-websocket-version")),
        Err(HandshakeError::UnsupportedVersion)
    );
    assert_eq!(
        check_request(&without("sec-websocket-key")),
        Err(HandshakeError::BadKey)
    );
    let mut old = without("sec-websocket-version");
    old.push(("Sec-WebSocket-Version", "8"));
    assert_eq!(check_request(&old), Err(HandshakeError::UnsupportedVersion));
    let mut twice = good.to_vec();
    twice.push(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(check_request(&twice), Err(HandshakeError::BadKey));
}

#[test]
fn handshake_response_headers() {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let good = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ];
    assert_eq!(check_response(&good, key), Ok(()));
    assert_eq!(
        check_response(&good, "AQIDBAUGBwgJCgsMDQ4PEA=="),
        Err(HandshakeError::BadAccept)
    );
    assert_eq!(
        check_response(&good[1..], key),
        Err(HandshakeError::NotAnUpgrade)
    );
    assert_eq!(
        check_response(&[good[0], good[2]], key),
        Err(HandshakeError::NoConnectionUpgrade)
    );
    assert_eq!(
        check_response(&good[..2], key),
        Err(HandshakeError::BadAccept)
    );
}

// ---- frame errors ----

#[test]
fn reserved_bits_and_opcodes_are_1002() {
    for first in [0xc1, 0xa1, 0x91] {
        assert_eq!(message_error(Role::Server, &from_client(first, b"x")), 1002);
    }
    for opcode in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        assert_eq!(
            message_error(Role::Server, &from_client(0x80 | opcode, b"x")),
            1002
        );
    }
}

#[test]
fn masking_rules_both_ways() {
    // A server refuses unmasked frames, a client masked ones.
    assert_eq!(message_error(Role::Server, &wire(0x81, b"hi", None)), 1002);
    assert_eq!(message_error(Role::Client, &from_client(0x81, b"hi")), 1002);
    // Both from the first two bytes.
    assert_eq!(message_error(Role::Server, &[0x81, 0x02]), 1002);
    assert_eq!(message_error(Role::Client, &[0x81, 0x82]), 1002);

    // A client's encoder masks (with a key that changes), a server's does not.
    let mut client = FrameCodec::new(Role::Client);
    let mut a = BytesMut::new();
    let mut b = BytesMut::new();
    client
        .encode(Frame::new(OpCode::Text, "Hello"), &mut a)
        .unwrap();
    client
        .encode(Frame::new(OpCode::Text, "Hello"), &mut b)
        .unwrap();
    assert_eq!(a[1], 0x85);
    assert_ne!(a[2..], b[2..], "a fresh key each frame");
    // Clones (one per connection) do not repeat each other's keys.
    let mut c = BytesMut::new();
    let mut d = BytesMut::new();
    let template = FrameCodec::new(Role::Client);
    template
        .clone()
        .encode(Frame::new(OpCode::Text, "Hello"), &mut c)
        .unwrap();
    template
        .clone()
        .encode(Frame::new(OpCode::Text, "Hello"), &mut d)
        .unwrap();
    assert_ne!(c[2..6], d[2..6]);
    let mut server = FrameCodec::new(Role::Server);
    assert_eq!(
        server.decode(&mut a).unwrap(),
        Some(Frame::new(OpCode::Text, "Hello"))
    );
    let mut out = BytesMut::new();
    server
        .encode(Frame::new(OpCode::Text, "Hello"), &mut out)
        .unwrap();
    assert_eq!(out[1], 0x05);
}

#[test]
fn control_frame_rules_are_1002() {
    let long = [b'x'; 126];
    assert_eq!(message_error(Role::Server, &from_client(0x89, &long)), 1002);
    assert_eq!(message_error(Role::Server, &from_client(0x09, b"x")), 1002);
    assert_eq!(message_error(Role::Server, &from_client(0x08, b"")), 1002);
    assert_eq!(message_error(Role::Server, &from_client(0x0a, b"")), 1002);
    // 125 bytes is fine.
    let mut codec = MessageCodec::new(Role::Server);
    let mut buffer = BytesMut::from(&from_client(0x89, &long[..125])[..]);
    assert_eq!(
        codec.decode(&mut buffer).unwrap(),
        Some(Message::Ping(Bytes::copy_from_slice(&long[..125])))
    );
    // The encoder refuses what the decoder would.
    let mut out = BytesMut::new();
    assert!(FrameCodec::new(Role::Server)
        .encode(Frame::new(OpCode::Ping, long.to_vec()), &mut out)
        .is_err());
    assert!(out.is_empty());
}

#[test]
fn non_minimal_lengths_are_1002() {
    // 5 bytes in the 16-bit form, 200 bytes in the 64-bit form.
    assert_eq!(message_error(Role::Client, &[0x82, 126, 0, 5]), 1002);
    assert_eq!(
        message_error(Role::Client, &[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 200]),
        1002
    );
    assert_eq!(
        message_error(Role::Client, &[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
        1002
    );
}

#[test]
fn lengths_over_2_63_are_1002() {
    let mut input = vec![0x82, 127];
    input.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert_eq!(message_error(Role::Client, &input), 1002);
    let mut input = vec![0x82, 127];
    input.extend_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(message_error(Role::Client, &input), 1002);
    // Just below: too big for the limit instead.
    let mut input = vec![0x82, 127];
    input.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
    assert_eq!(message_error(Role::Client, &input), 1009);
}

#[test]
fn oversized_frames_fail_from_the_header() {
    let codec = FrameCodec::builder(Role::Server)
        .max_frame_payload(1000)
        .build()
        .unwrap();
    // Only the header of a 1001-byte frame: the error comes at once.
    let mut header = BytesMut::from(&[0x82, 0xfe, 0x03, 0xe9][..]);
    assert_eq!(code_of(codec.clone().decode(&mut header)), 1009);
    assert!(header.is_empty());
    // Exactly the maximum is accepted.
    let payload = vec![9u8; 1000];
    let mut input = BytesMut::from(&from_client(0x82, &payload)[..]);
    assert_eq!(
        codec.clone().decode(&mut input).unwrap(),
        Some(Frame::new(OpCode::Binary, payload))
    );
    // The default: 1 MiB, and a 64-bit header of 1 MiB + 1.
    let mut input = vec![0x82, 0xff];
    input.extend_from_slice(&(1u64 << 20 | 1).to_be_bytes());
    let mut buffer = BytesMut::from(&input[..]);
    assert_eq!(
        code_of(FrameCodec::new(Role::Server).decode(&mut buffer)),
        1009
    );
}

#[test]
fn configuration_limits() {
    assert!(FrameCodec::builder(Role::Server)
        .max_frame_payload(16 * 1024 * 1024 + 1)
        .build()
        .is_err());
    assert!(FrameCodec::builder(Role::Server)
        .max_frame_payload(124)
        .build()
        .is_err());
    assert!(MessageCodec::builder(Role::Server)
        .max_message_size(0)
        .build()
        .is_err());
    assert!(MessageCodec::builder(Role::Server)
        .max_message_size(64 * 1024 * 1024 + 1)
        .build()
        .is_err());
    let codec = MessageCodec::builder(Role::Server)
        .max_frame_payload(16 * 1024 * 1024)
        .max_message_size(64 * 1024 * 1024)
        .build()
        .unwrap();
    assert_eq!(codec.max_message_size(), 64 * 1024 * 1024);
    assert_eq!(codec.frame_codec().max_frame_payload(), 16 * 1024 * 1024);
}

#[test]
fn the_decoder_stops_after_an_error() {
    let mut codec = MessageCodec::new(Role::Client);
    let mut buffer = BytesMut::from(&[0xc1, 0x00, 0x81, 0x00][..]);
    assert_eq!(code_of(codec.decode(&mut buffer)), 1002);
    buffer.extend_from_slice(&[0x81, 0x02, b'o', b'k']);
    assert_eq!(codec.decode(&mut buffer).unwrap(), None);
    assert!(buffer.is_empty());
}

#[test]
fn truncated_at_eof() {
    let mut codec = MessageCodec::new(Role::Client);
    let mut buffer = BytesMut::from(&b"\x81\x05Hel"[..]);
    assert!(matches!(
        codec.decode_eof(&mut buffer),
        Err(DecodeError::Truncated { remaining: 5 })
    ));
    // An unfinished fragmented message too.
    let mut codec = MessageCodec::new(Role::Client);
    let mut buffer = BytesMut::from(&b"\x01\x03Hel"[..]);
    assert!(matches!(
        codec.decode_eof(&mut buffer),
        Err(DecodeError::Truncated { remaining: 3 })
    ));
}

// ---- messages ----

#[test]
fn fragment_rules_are_1002() {
    // A continuation with nothing to continue.
    assert_eq!(message_error(Role::Client, b"\x80\x02lo"), 1002);
    // A new text frame, or binary, while one is open.
    assert_eq!(message_error(Role::Client, b"\x01\x01a\x81\x01b"), 1002);
    assert_eq!(message_error(Role::Client, b"\x02\x01a\x01\x01b"), 1002);
}

#[test]
fn control_frames_interleave_with_fragments() {
    let input = b"\x01\x03Hel\x89\x01x\x00\x01l\x8a\x00\x80\x01o";
    assert_eq!(
        same_at_every_split(&MessageCodec::new(Role::Client), input),
        [
            Event::Frame(Message::Ping("x".into())),
            Event::Frame(Message::Pong(Bytes::new())),
            Event::Frame(Message::Text("Hello".into())),
        ]
    );
    // Binary, with empty fragments along the way.
    let input = b"\x02\x00\x00\x02ab\x00\x00\x88\x02\x03\xe8\x80\x01c";
    assert_eq!(
        same_at_every_split(&MessageCodec::new(Role::Client), input),
        [
            Event::Frame(Message::Close(Some((1000, String::new())))),
            Event::Frame(Message::Binary("abc".into())),
        ]
    );
}

#[test]
fn utf8_split_across_fragments() {
    // "é€😀" with every character cut between fragments.
    let text = "é€😀".as_bytes();
    let mut input = Vec::new();
    input.extend(wire(0x01, &text[..1], None));
    input.extend(wire(0x00, &text[1..3], None));
    input.extend(wire(0x00, &text[3..6], None));
    input.extend(wire(0x00, &text[6..], None));
    input.extend(wire(0x80, b"", None));
    assert_eq!(
        same_at_every_split(&MessageCodec::new(Role::Client), &input),
        [Event::Frame(Message::Text("é€😀".into()))]
    );
}

#[test]
fn invalid_utf8_is_1007_and_fails_early() {
    // Unfragmented.
    assert_eq!(message_error(Role::Client, b"\x81\x02\xc3\x28"), 1007);
    // In the first fragment of an unfinished message: no need to wait for
    // the end.
    assert_eq!(message_error(Role::Client, b"\x01\x03ok\xff"), 1007);
    // A surrogate split across fragments fails on the second.
    assert_eq!(
        message_error(Role::Client, b"\x01\x01\xed\x00\x02\xa0\x80"),
        1007
    );
    // A message that ends in the middle of a character.
    assert_eq!(message_error(Role::Client, b"\x01\x01a\x80\x01\xe2"), 1007);
    assert_eq!(message_error(Role::Client, b"\x81\x01\xe2"), 1007);
    // Binary is not checked.
    let mut codec = MessageCodec::new(Role::Client);
    let mut buffer = BytesMut::from(&b"\x82\x01\xff"[..]);
    assert_eq!(
        codec.decode(&mut buffer).unwrap(),
        Some(Message::Binary(Bytes::from_static(b"\xff")))
    );
}

#[test]
fn message_size_limit_is_1009_from_the_header() {
    let codec = MessageCodec::builder(Role::Client)
        .max_message_size(10)
        .build()
        .unwrap();
    // 6 + 4 bytes is fine.
    let mut buffer = BytesMut::from(&b"\x01\x06abcdef\x80\x04ghij"[..]);
    assert_eq!(
        codec.clone().decode(&mut buffer).unwrap(),
        Some(Message::Text("abcdefghij".into()))
    );
    // 6 + 5: the header of the second fragment is enough to refuse it.
    let mut buffer = BytesMut::from(&b"\x01\x06abcdef\x80\x05"[..]);
    assert_eq!(code_of(codec.clone().decode(&mut buffer)), 1009);
    // A control frame in the middle still fits.
    let mut buffer = BytesMut::from(&b"\x01\x0aabcdefghij\x89\x03abc\x80\x00"[..]);
    let mut c = codec.clone();
    assert_eq!(
        c.decode(&mut buffer).unwrap(),
        Some(Message::Ping("abc".into()))
    );
    assert_eq!(
        c.decode(&mut buffer).unwrap(),
        Some(Message::Text("abcdefghij".into()))
    );
    // One frame over the message limit.
    let mut buffer = BytesMut::from(&b"\x82\x0b"[..]);
    assert_eq!(code_of(codec.clone().decode(&mut buffer)), 1009);
}

#[test]
fn close_payloads() {
    let close = |payload: &[u8]| {
        let mut input = vec![0x88, payload.len() as u8];
        input.extend_from_slice(payload);
        let mut buffer = BytesMut::from(&input[..]);
        MessageCodec::new(Role::Client).decode(&mut buffer)
    };
    assert_eq!(close(b"").unwrap(), Some(Message::Close(None)));
    assert_eq!(
        close(b"\x03\xe8bye").unwrap(),
        Some(Message::Close(Some((1000, "bye".into()))))
    );
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
    ] {
        assert!(close(&code.to_be_bytes()).is_ok(), "{code}");
    }
    assert_eq!(code_of(close(b"\x03")), 1002);
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        assert_eq!(code_of(close(&code.to_be_bytes())), 1002, "{code}");
    }
    assert_eq!(code_of(close(b"\x03\xe8\xff")), 1007);
}

// ---- the session ----

fn session(role: Role) -> WebSocketSession {
    WebSocketSession::new(MessageCodec::new(role))
}

#[test]
fn session_answers_pings_and_closes() {
    let mut server = session(Role::Server);
    let mut input = BytesMut::new();
    input.extend_from_slice(&from_client(0x89, b"hb"));
    input.extend_from_slice(&from_client(0x88, b"\x03\xe9going"));
    input.extend_from_slice(&from_client(0x81, b"after"));
    let mut out = BytesMut::new();
    assert_eq!(
        server.receive(&mut input, &mut out).unwrap(),
        Some(Received::Ping("hb".into()))
    );
    assert_eq!(&out[..], b"\x8a\x02hb");
    out.clear();
    assert_eq!(
        server.receive(&mut input, &mut out).unwrap(),
        Some(Received::Closed(Some((1001, "going".into()))))
    );
    assert_eq!(&out[..], b"\x88\x02\x03\xe9");
    assert_eq!(server.state(), SessionState::Closed);
    out.clear();
    // Nothing after the Close.
    assert_eq!(server.receive(&mut input, &mut out).unwrap(), None);
    assert!(out.is_empty());
    assert!(server.send(Message::Text("late".into()), &mut out).is_err());
    // An empty Close is answered with an empty one.
    let mut server = session(Role::Server);
    let mut input = BytesMut::from(&from_client(0x88, b"")[..]);
    assert_eq!(
        server.receive(&mut input, &mut out).unwrap(),
        Some(Received::Closed(None))
    );
    assert_eq!(&out[..], b"\x88\x00");
}

#[test]
fn session_after_sending_close_ignores_data() {
    let mut client = session(Role::Client);
    let mut out = BytesMut::new();
    assert!(client.close(1000, "bye", &mut out));
    assert!(!client.close(1000, "again", &mut out));
    assert_eq!(client.state(), SessionState::CloseSent);
    let mut server = FrameCodec::new(Role::Server);
    assert_eq!(
        server.decode(&mut out).unwrap(),
        Some(Frame::new(OpCode::Close, &b"\x03\xe8bye"[..]))
    );
    assert!(out.is_empty());
    assert!(client.send(Message::Text("more".into()), &mut out).is_err());

    let mut input = BytesMut::from(&b"\x81\x04late\x89\x00\x8a\x01p\x88\x02\x03\xe8\x81\x01x"[..]);
    assert_eq!(
        client.receive(&mut input, &mut out).unwrap(),
        Some(Received::Pong("p".into()))
    );
    assert_eq!(
        client.receive(&mut input, &mut out).unwrap(),
        Some(Received::Closed(Some((1000, String::new()))))
    );
    assert!(out.is_empty(), "no pong and no echo once our Close is sent");
    assert_eq!(client.state(), SessionState::Closed);
}

#[test]
fn session_protocol_errors_send_their_close() {
    let cases: [(&[u8], u16); 4] = [
        (b"\x81\x02hi", 1002),               // unmasked, to a server
        (b"\x81\x82\0\0\0\0\xc3\x28", 1007), // bad UTF-8
        (b"\x82\xff\0\0\0\0\x01\0\0\0", 1009),
        (b"\x88\x82\0\0\0\0\x03\xed", 1002), // close code 1005
    ];
    for (input, code) in cases {
        let mut server = session(Role::Server);
        let mut input = BytesMut::from(input);
        let mut out = BytesMut::new();
        let err = server.receive(&mut input, &mut out).unwrap_err();
        assert_eq!(err.code(), code);
        let mut client = FrameCodec::new(Role::Client);
        assert_eq!(
            client.decode(&mut out).unwrap(),
            Some(Frame::new(
                OpCode::Close,
                Bytes::copy_from_slice(&code.to_be_bytes())
            ))
        );
        assert_eq!(server.state(), SessionState::Closed);
    }
}

#[test]
fn session_round_trip_with_fragments() {
    let mut client = session(Role::Client);
    let mut server = session(Role::Server);
    let mut wire = BytesMut::new();
    let mut codec = FrameCodec::new(Role::Client);
    codec
        .encode(frame(false, OpCode::Binary, b"ab"), &mut wire)
        .unwrap();
    codec
        .encode(Frame::new(OpCode::Ping, "1"), &mut wire)
        .unwrap();
    codec
        .encode(frame(true, OpCode::Continuation, b"cd"), &mut wire)
        .unwrap();
    client.send(Message::Text("t".into()), &mut wire).unwrap();
    let mut back = BytesMut::new();
    let mut got = Vec::new();
    while let Some(received) = server.receive(&mut wire, &mut back).unwrap() {
        got.push(received);
    }
    assert_eq!(
        got,
        [
            Received::Ping("1".into()),
            Received::Binary("abcd".into()),
            Received::Text("t".into()),
        ]
    );
    let mut nothing = BytesMut::new();
    assert_eq!(
        client.receive(&mut back, &mut nothing).unwrap(),
        Some(Received::Pong("1".into()))
    );
}

// ---- masking, split points, arbitrary input ----

#[test]
fn apply_mask_matches_the_bytewise_definition() {
    let mut rng = XorShift(0x5eed_1234);
    for len in 0..70 {
        for offset in 0..4 {
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let key = (rng.next() as u32).to_be_bytes();
            let mut fast = data.clone();
            apply_mask(&mut fast, key, offset);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[(i + offset) % 4])
                .collect();
            assert_eq!(fast, slow, "len {len} offset {offset}");
        }
    }
}

/// A random valid stream of client frames (control frames interleaved
/// with fragmented messages) and the messages it holds. Text messages are
/// cut at arbitrary bytes, so characters are split between fragments.
fn random_stream(rng: &mut XorShift) -> (Vec<u8>, Vec<Message>) {
    const CHARS: [&str; 4] = ["a", "é", "€", "😀"];
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let text = rng.chance(50);
        let len = match rng.below(8) {
            0 => 126 + rng.below(600) as usize,
            1 => 0,
            _ => rng.below(40) as usize,
        };
        let whole: Vec<u8> = if text {
            (0..len)
                .map(|_| CHARS[rng.below(4) as usize])
                .collect::<String>()
                .into_bytes()
        } else {
            (0..len).map(|_| rng.next() as u8).collect()
        };
        let pieces = 1 + rng.below(4) as usize;
        let mut cuts: Vec<usize> = (1..pieces)
            .map(|_| rng.below(whole.len() as u64 + 1) as usize)
            .collect();
        cuts.push(0);
        cuts.push(whole.len());
        cuts.sort_unstable();
        for (i, bounds) in cuts.windows(2).enumerate() {
            let opcode = match (i, text) {
                (0, true) => 1,
                (0, false) => 2,
                _ => 0,
            };
            let fin = if i + 2 == cuts.len() { 0x80 } else { 0 };
            input.extend(from_client(fin | opcode, &whole[bounds[0]..bounds[1]]));
            if fin != 0 {
                expected.push(if text {
                    Message::Text(String::from_utf8(whole.clone()).unwrap())
                } else {
                    Message::Binary(whole.clone().into())
                });
            }
            if rng.chance(30) {
                let ping: Vec<u8> = (0..rng.below(126)).map(|_| rng.next() as u8).collect();
                input.extend(from_client(0x89, &ping));
                expected.push(Message::Ping(ping.into()));
            }
        }
    }
    (input, expected)
}

#[test]
fn random_streams_at_random_split_points() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let (input, expected) = random_stream(&mut rng);
        let codec = MessageCodec::new(Role::Server);
        let chunks = support::chunked(&mut rng, &input, 40);
        let events = support::feed(&codec, &chunks);
        let expected: Vec<_> = expected.into_iter().map(Event::Frame).collect();
        assert_eq!(events, expected);
    }
}

#[test]
fn every_split_of_a_mixed_stream() {
    let mut input = Vec::new();
    input.extend(from_client(0x01, "é".as_bytes()));
    input.extend(from_client(0x89, b"p"));
    input.extend(from_client(0x80, &[b'z'; 130]));
    input.extend(from_client(0x88, b"\x03\xe8"));
    let mut text = "é".to_owned();
    text.push_str(&"z".repeat(130));
    assert_eq!(
        same_at_every_split(&MessageCodec::new(Role::Server), &input),
        [
            Event::Frame(Message::Ping("p".into())),
            Event::Frame(Message::Text(text)),
            Event::Frame(Message::Close(Some((1000, String::new())))),
        ]
    );
}

#[test]
fn no_panic_on_arbitrary_bytes() {
    let mut rng = XorShift(0xdead_beef_cafe);
    for round in 0..4000 {
        let len = rng.below(64) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Make some of them look like frames, to get past the first checks.
        if round % 2 == 0 && len >= 2 {
            input[0] &= 0x8f;
            input[1] = (input[1] & 0x80) | ((input[1] & 0x7f) % 40);
        }
        for role in [Role::Server, Role::Client] {
            let codec = MessageCodec::builder(role)
                .max_message_size(200)
                .build()
                .unwrap();
            let chunks = support::chunked(&mut rng, &input, 8);
            let _ = support::feed(&codec, &chunks);
            let mut session = WebSocketSession::new(codec);
            let mut buffer = BytesMut::from(&input[..]);
            let mut out = BytesMut::new();
            while let Ok(Some(_)) = session.receive(&mut buffer, &mut out) {}
        }
    }
}

#[test]
fn session_is_the_same_at_every_split() {
    let mut input = Vec::new();
    input.extend(from_client(0x02, b"ab"));
    input.extend(from_client(0x89, b"ping"));
    input.extend(from_client(0x80, b"cd"));
    input.extend(from_client(0x81, "é".as_bytes()));
    input.extend(from_client(0x88, b"\x0b\xb8app"));
    input.extend(from_client(0x81, b"ignored"));
    let run = |chunks: &[&[u8]]| {
        let mut server = session(Role::Server);
        let mut buffer = BytesMut::new();
        let mut out = BytesMut::new();
        let mut got = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            while let Some(received) = server.receive(&mut buffer, &mut out).unwrap() {
                got.push(received);
            }
        }
        (got, out, server.state())
    };
    let whole = run(&[&input]);
    assert_eq!(
        whole.0,
        [
            Received::Ping("ping".into()),
            Received::Binary("abcd".into()),
            Received::Text("é".into()),
            Received::Closed(Some((3000, "app".into()))),
        ]
    );
    assert_eq!(&whole.1[..], b"\x8a\x04ping\x88\x02\x0b\xb8");
    assert_eq!(whole.2, SessionState::Closed);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(run(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
}

#[test]
fn round_trips_through_both_roles() {
    let mut rng = XorShift(0x1234_5678_9abc);
    for len in [0usize, 1, 7, 8, 9, 125, 126, 65535, 65536, 70001] {
        let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        for (from, to) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
            let mut wire = BytesMut::new();
            MessageCodec::new(from)
                .encode(Message::Binary(payload.clone().into()), &mut wire)
                .unwrap();
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            } + if from == Role::Client { 4 } else { 0 };
            assert_eq!(wire.len(), header + len);
            assert_eq!(
                MessageCodec::new(to).decode(&mut wire).unwrap(),
                Some(Message::Binary(payload.clone().into()))
            );
            assert!(wire.is_empty());
        }
    }
}

#[test]
fn close_reasons_are_cut_to_fit_at_a_character() {
    let reason = "€".repeat(60); // 180 bytes
    let frame = Message::Close(Some((1000, reason))).into_frame();
    // 2 bytes of code and 41 whole euro signs (123 bytes would cut one).
    assert_eq!(frame.payload.len(), 2 + 41 * 3);
    let mut wire = BytesMut::new();
    FrameCodec::new(Role::Server)
        .encode(frame, &mut wire)
        .unwrap();
    assert_eq!(
        MessageCodec::new(Role::Client).decode(&mut wire).unwrap(),
        Some(Message::Close(Some((1000, "€".repeat(41)))))
    );
}
