//! The runtime pipeline: ordering, mutation, pass-through, leftover
//! handover, exceptions, and one real loopback connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use twill::testing::StringTransport;
use twill::{Protocol, Reactor, Reason};
use twill_protocols::codec::pipeline::{
    Message, Pipeline, PipelineContext, PipelineError, PipelineHandler, PipelineProtocol, Stage,
};
use twill_protocols::codec::{
    DecodeError, Decoder, EncodeError, LineBasedFrameDecoder, LineEncoder, StringDecoder,
    StringEncoder,
};
use twill_test_support::events::Log;
use twill_test_support::reactor::{serve, LIMIT};

fn describe(message: &Message) -> String {
    if let Some(s) = message.downcast_ref::<String>() {
        format!("str {s}")
    } else if let Some(b) = message.downcast_ref::<Bytes>() {
        format!("bytes {}", String::from_utf8_lossy(b))
    } else if let Some(n) = message.downcast_ref::<u32>() {
        format!("u32 {n}")
    } else {
        "other".into()
    }
}

type Hook = Box<dyn FnMut(&PipelineContext, &str)>;

/// Logs what it gets; runs `hook` on every string message (to change the
/// pipeline or write); keeps the default `exception_caught` unless
/// `tolerant`.
struct Recorder {
    log: Log,
    hook: Option<Hook>,
    tolerant: bool,
    ctx: Option<PipelineContext>,
}

impl Recorder {
    fn new(log: &Log) -> Recorder {
        Recorder {
            log: log.clone(),
            hook: None,
            tolerant: false,
            ctx: None,
        }
    }
    fn hook(mut self, hook: impl FnMut(&PipelineContext, &str) + 'static) -> Recorder {
        self.hook = Some(Box::new(hook));
        self
    }
    fn tolerant(mut self) -> Recorder {
        self.tolerant = true;
        self
    }
}

impl PipelineHandler for Recorder {
    fn connection_made(&mut self, ctx: &PipelineContext) {
        self.ctx = Some(ctx.clone());
    }
    fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
        self.log.push(describe(&message));
        if let (Some(hook), Some(s)) = (&mut self.hook, message.downcast_ref::<String>()) {
            hook(ctx, s);
        }
    }
    fn exception_caught(&mut self, ctx: &PipelineContext, error: DecodeError) {
        self.log.push(format!("error {error}"));
        if !self.tolerant {
            ctx.fail(error);
        }
    }
    fn eof_received(&mut self, _: &PipelineContext) -> bool {
        self.log.push("eof");
        false
    }
    fn connection_lost(&mut self, _ctx: &PipelineContext, reason: &Reason) {
        self.log.push(format!("lost {}", reason.is_clean()));
    }
}

/// Connects `handler` behind `pipeline` to a fresh `StringTransport`.
fn connect<H: PipelineHandler>(
    pipeline: Pipeline,
    handler: H,
) -> (PipelineProtocol<H>, StringTransport) {
    let mut protocol = PipelineProtocol::new(pipeline, handler);
    let transport = StringTransport::new();
    protocol.connection_made(&transport.transport());
    (protocol, transport)
}

fn lines_and_strings() -> Pipeline {
    let pipeline = Pipeline::new();
    pipeline
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap()
        .add_last("utf8", Stage::message_decoder(StringDecoder))
        .unwrap();
    pipeline
}

/// A one-byte length prefix, then the frame: the "upgraded" protocol.
#[derive(Debug, Clone, Default)]
struct TinyLength;

impl Decoder for TinyLength {
    type Item = Bytes;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        match src.first() {
            Some(&n) if src.len() > usize::from(n) => {
                let _ = src.split_to(1);
                Ok(Some(src.split_to(usize::from(n)).freeze()))
            }
            _ => Ok(None),
        }
    }
}

/// An inbound stage that logs `tag` and passes the message on.
fn tap_in(log: &Log, tag: &'static str) -> Stage {
    let log = log.clone();
    Stage::inbound(move |message, out| {
        log.push(format!("in {tag}"));
        out.push(message);
        Ok(())
    })
}

/// An outbound stage that logs `tag` and passes the message on.
fn tap_out(log: &Log, tag: &'static str) -> Stage {
    let log = log.clone();
    Stage::outbound(move |message, out| {
        log.push(format!("out {tag}"));
        out.push(message);
        Ok(())
    })
}

fn ctx<H>(protocol: &PipelineProtocol<H>) -> PipelineContext
where
    H: PipelineHandler + AsRef<Option<PipelineContext>>,
{
    protocol.handler().as_ref().clone().unwrap()
}

impl AsRef<Option<PipelineContext>> for Recorder {
    fn as_ref(&self) -> &Option<PipelineContext> {
        &self.ctx
    }
}

fn names(pipeline: &Pipeline) -> Vec<String> {
    pipeline.names()
}

// ---------------------------------------------------------------- ordering

#[test]
fn inbound_goes_first_to_last_and_outbound_last_to_first() {
    // Netty's javadoc example: InboundA, InboundB, OutboundA, OutboundB,
    // then a stage of each kind again: inbound a, b, c; outbound c, b, a.
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline
        .add_last("in-a", tap_in(&log, "a"))
        .unwrap()
        .add_last("in-b", tap_in(&log, "b"))
        .unwrap()
        .add_last("out-a", tap_out(&log, "a"))
        .unwrap()
        .add_last("out-b", tap_out(&log, "b"))
        .unwrap()
        .add_last("in-c", tap_in(&log, "c"))
        .unwrap()
        .add_last("out-c", tap_out(&log, "c"))
        .unwrap();
    let (mut protocol, transport) = connect(pipeline, Recorder::new(&log));
    protocol.data_received(Bytes::from("ping"));
    assert_eq!(log.take(), ["in a", "in b", "in c", "bytes ping"]);

    ctx(&protocol).write(Bytes::from("pong"));
    assert_eq!(log.take(), ["out c", "out b", "out a"]);
    assert_eq!(transport.value(), b"pong");
}

#[test]
fn outbound_stages_compose_from_the_tail_to_the_head() {
    // Written: a u32; "number" makes it a String, "encoder" (nearer the
    // head) makes the String a line.
    let pipeline = Pipeline::new();
    pipeline
        .add_last("encoder", Stage::encoder::<String, _>(LineEncoder::crlf()))
        .unwrap()
        .add_last(
            "number",
            Stage::message_encoder::<u32, _>(|n: u32| Ok::<_, EncodeError>(format!("n={n}"))),
        )
        .unwrap();
    let (protocol, transport) = connect(pipeline, Recorder::new(&Log::default()));
    ctx(&protocol).write(7u32);
    ctx(&protocol).write(String::from("text"));
    assert_eq!(transport.value(), b"n=7\r\ntext\r\n");
    assert!(!transport.disconnecting());
}

#[test]
fn an_empty_pipeline_passes_bytes_both_ways() {
    let log = Log::default();
    let (mut protocol, transport) = connect(Pipeline::new(), Recorder::new(&log));
    protocol.data_received(Bytes::from("raw"));
    assert_eq!(log.take(), ["bytes raw"]);
    let ctx = ctx(&protocol);
    ctx.write(Bytes::from("a"));
    ctx.write(BytesMut::from("b"));
    ctx.write(b"c".to_vec());
    // A Message is not boxed twice.
    ctx.write(Box::new(Bytes::from("d")) as Message);
    assert_eq!(transport.value(), b"abcd");
    assert!(!transport.disconnecting());
}

// ----------------------------------------------------- mutation semantics

#[test]
fn add_first_last_before_after_place_stages_and_names_are_unique() {
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline.add_last("b", tap_in(&log, "b")).unwrap();
    pipeline.add_first("a", tap_in(&log, "a")).unwrap();
    pipeline.add_last("d", tap_in(&log, "d")).unwrap();
    pipeline.add_before("d", "c", tap_in(&log, "c")).unwrap();
    pipeline.add_after("d", "e", tap_in(&log, "e")).unwrap();
    pipeline.add_after("a", "a2", tap_in(&log, "a2")).unwrap();
    pipeline
        .add_before("a", "start", tap_in(&log, "start"))
        .unwrap();
    assert_eq!(names(&pipeline), ["start", "a", "a2", "b", "c", "d", "e"]);

    let duplicate = |name: &str| PipelineError::DuplicateName(name.into());
    let missing = |name: &str| PipelineError::NoSuchStage(name.into());
    assert_eq!(
        pipeline.add_last("c", tap_in(&log, "x")).unwrap_err(),
        duplicate("c")
    );
    assert_eq!(
        pipeline.add_first("a", tap_in(&log, "x")).unwrap_err(),
        duplicate("a")
    );
    assert_eq!(
        pipeline
            .add_before("zz", "x", tap_in(&log, "x"))
            .unwrap_err(),
        missing("zz")
    );
    assert_eq!(
        pipeline
            .add_after("zz", "x", tap_in(&log, "x"))
            .unwrap_err(),
        missing("zz")
    );
    assert_eq!(
        pipeline.add_after("b", "e", tap_in(&log, "x")).unwrap_err(),
        duplicate("e")
    );
    assert_eq!(pipeline.remove("zz").unwrap_err(), missing("zz"));
    assert_eq!(
        pipeline.replace("zz", "x", tap_in(&log, "x")).unwrap_err(),
        missing("zz")
    );
    assert_eq!(
        pipeline.replace("a", "b", tap_in(&log, "x")).unwrap_err(),
        duplicate("b")
    );
    assert_eq!(
        duplicate("c").to_string(),
        "duplicate stage name: c",
        "messages name the stage"
    );
    // Failed changes change nothing.
    assert_eq!(names(&pipeline), ["start", "a", "a2", "b", "c", "d", "e"]);

    pipeline.remove("start").unwrap();
    pipeline.replace("c", "c", tap_out(&log, "c")).unwrap();
    pipeline.replace("a2", "z", tap_in(&log, "z")).unwrap();
    assert_eq!(names(&pipeline), ["a", "z", "b", "c", "d", "e"]);
    // A removed name is free again.
    pipeline.add_last("start", tap_in(&log, "start")).unwrap();

    let (mut protocol, _t) = connect(pipeline, Recorder::new(&log));
    protocol.data_received(Bytes::from("x"));
    let expected = [
        "in a", "in z", "in b", "in d", "in e", "in start", "bytes x",
    ];
    assert_eq!(log.take(), expected);
}

#[test]
fn get_gives_the_stage_codec_by_name_and_type() {
    let pipeline = lines_and_strings();
    assert_eq!(
        pipeline
            .get::<LineBasedFrameDecoder>("lines")
            .unwrap()
            .max_length(),
        64
    );
    assert!(pipeline.get::<StringDecoder>("utf8").is_some());
    assert!(
        pipeline.get::<StringDecoder>("lines").is_none(),
        "wrong type"
    );
    assert!(pipeline.get::<StringDecoder>("nope").is_none());
    let debug = format!("{pipeline:?}");
    assert!(debug.contains("\"lines\": Stage(inbound"), "{debug}");
    assert!(debug.contains("LineBasedFrameDecoder"), "{debug}");
}

// ----------------------------------------------------------- pass-through

#[test]
fn stages_pass_messages_of_other_types_through_unchanged() {
    // A closure turns "n:<digits>" frames into u32s and leaves others; the
    // string decoder (Bytes → String) lets the u32 through, and so does a
    // second frame decoder, which only takes bytes.
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap()
        .add_last(
            "numbers",
            Stage::inbound(|message, out| {
                match message.downcast::<Bytes>() {
                    Ok(b) if b.starts_with(b"n:") => {
                        let n: u32 = std::str::from_utf8(&b[2..]).unwrap().parse().unwrap();
                        out.push(Box::new(n));
                    }
                    Ok(b) => out.push(Box::new(b)),
                    Err(other) => out.push(other),
                }
                Ok(())
            }),
        )
        .unwrap()
        .add_last("frames", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap()
        .add_last("utf8", Stage::message_decoder(StringDecoder))
        .unwrap();
    let (mut protocol, transport) = connect(pipeline, Recorder::new(&log));
    protocol.data_received(Bytes::from("n:7\nn:8\n"));
    assert_eq!(log.take(), ["u32 7", "u32 8"]);

    // Outbound: an encoder for Strings lets Bytes through untouched.
    pipeline_encoder(&protocol);
    let ctx = ctx(&protocol);
    ctx.write(Bytes::from("raw|"));
    ctx.write(String::from("line"));
    assert_eq!(transport.value(), b"raw|line\n");

    // A message nobody turns into bytes fails the connection.
    ctx.write(5u32);
    assert!(transport.failure().unwrap().contains("not bytes"));
}

fn pipeline_encoder<H: PipelineHandler>(protocol: &PipelineProtocol<H>) {
    protocol
        .pipeline()
        .add_first("encoder", Stage::encoder::<String, _>(LineEncoder::new()))
        .unwrap();
}

#[test]
fn a_byte_decoder_passes_other_messages_in_order_after_its_frames() {
    let log = Log::default();
    let pipeline = Pipeline::new();
    // The closure emits the bytes and then a marker; the line decoder
    // delivers the complete lines in those bytes before the marker.
    pipeline
        .add_last(
            "marker",
            Stage::inbound(|message: Message, out| {
                // Boxed twice by mistake: the pipeline unwraps it.
                out.push(Box::new(message));
                out.push(Box::new(0u32));
                Ok(())
            }),
        )
        .unwrap()
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap();
    let (mut protocol, _t) = connect(pipeline, Recorder::new(&log));
    protocol.data_received(Bytes::from("a\nb\npart"));
    protocol.data_received(Bytes::from("ial\n"));
    assert_eq!(
        log.take(),
        ["bytes a", "bytes b", "u32 0", "bytes partial", "u32 0"]
    );
}

// ------------------------------------------------------ leftover handover

/// The upgrade: lines until "UPGRADE", then one-byte-length frames, still
/// decoded as UTF-8 by the same string decoder.
fn upgrading_protocol(log: &Log) -> (PipelineProtocol<Recorder>, StringTransport) {
    let handler = Recorder::new(log).hook(|ctx, line| {
        if line == "UPGRADE" {
            ctx.pipeline()
                .replace("lines", "frames", Stage::decoder(TinyLength))
                .unwrap();
            ctx.write(Bytes::from("OK\n"));
        }
    });
    connect(lines_and_strings(), handler)
}

const UPGRADE: &[u8] = b"hello\nUPGRADE\n\x03abc\x00\x02d\n\x01f";

fn upgrade_events() -> Vec<String> {
    [
        "str hello",
        "str UPGRADE",
        "str abc",
        "str ",
        "str d\n",
        "str f",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn replacing_the_line_decoder_hands_its_leftover_bytes_to_the_new_decoder() {
    let log = Log::default();
    let (mut protocol, transport) = upgrading_protocol(&log);
    protocol.data_received(Bytes::from_static(UPGRADE));
    assert_eq!(log.take(), upgrade_events());
    assert_eq!(names(protocol.pipeline()), ["frames", "utf8"]);
    assert_eq!(transport.value(), b"OK\n");
    // What comes later goes to the new decoder too.
    protocol.data_received(Bytes::from_static(b"\x02g"));
    protocol.data_received(Bytes::from_static(b"h"));
    assert_eq!(log.take(), ["str gh"]);
    assert!(!transport.disconnecting());
}

#[test]
fn the_upgrade_decodes_the_same_at_every_split_point_and_byte_by_byte() {
    let run = |chunks: &[&[u8]]| {
        let log = Log::default();
        let (mut protocol, _t) = upgrading_protocol(&log);
        for chunk in chunks {
            protocol.data_received(Bytes::copy_from_slice(chunk));
        }
        log.take()
    };
    for at in 0..=UPGRADE.len() {
        let (a, b) = UPGRADE.split_at(at);
        assert_eq!(run(&[a, b]), upgrade_events(), "split at {at}");
        for at2 in at..=UPGRADE.len() {
            let (b1, b2) = b.split_at(at2 - at);
            assert_eq!(run(&[a, b1, b2]), upgrade_events(), "split at {at}, {at2}");
        }
    }
    let bytes: Vec<&[u8]> = UPGRADE.chunks(1).collect();
    assert_eq!(run(&bytes), upgrade_events(), "byte by byte");
}

#[test]
fn removing_a_decoder_hands_its_leftovers_to_the_next_stage_or_the_handler() {
    let log = Log::default();
    // Lines only: on "RAW", the line decoder goes and what it held reaches
    // the handler as one Bytes message.
    let pipeline = Pipeline::new();
    pipeline
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap();
    struct Raw(Log);
    impl PipelineHandler for Raw {
        fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
            self.0.push(describe(&message));
            if message.downcast_ref::<Bytes>().is_some_and(|b| b == "RAW") {
                ctx.pipeline().remove("lines").unwrap();
            }
        }
    }
    let (mut protocol, _t) = connect(pipeline, Raw(log.clone()));
    protocol.data_received(Bytes::from("a\nRAW\nb\nc"));
    protocol.data_received(Bytes::from("d\n"));
    assert_eq!(
        log.take(),
        ["bytes a", "bytes RAW", "bytes b\nc", "bytes d\n"]
    );
}

#[test]
fn removing_the_string_decoder_midstream_lets_frames_through_as_bytes() {
    let log = Log::default();
    let handler = Recorder::new(&log).hook(|ctx, line| {
        if line == "bytes" {
            ctx.pipeline().remove("utf8").unwrap();
        }
    });
    let (mut protocol, _t) = connect(lines_and_strings(), handler);
    protocol.data_received(Bytes::from("a\nbytes\nb\n"));
    assert_eq!(log.take(), ["str a", "str bytes", "bytes b"]);
}

/// Reads one `a` and announces an upgrade; the handler then takes it out:
/// the decoder of ByteToMessageDecoderTest.testRemoveWhileInCallDecode.
#[derive(Debug, Clone)]
struct UpgradeOnA;

impl Decoder for UpgradeOnA {
    type Item = String;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, DecodeError> {
        match src.first() {
            Some(b'a') => {
                let _ = src.split_to(1);
                Ok(Some("UPGRADE".to_owned()))
            }
            _ => Ok(None),
        }
    }
}

#[test]
fn removing_a_decoder_from_message_received_delivers_its_leftovers_right_after() {
    // ByteToMessageDecoderTest.testRemoveWhileInCallDecode: "abc" in one
    // read, the decoder takes "a" and the handler removes it on the
    // resulting message; "bc" follows at once, in the same read.
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline
        .add_last("upgrade", Stage::decoder(UpgradeOnA))
        .unwrap();
    let handler = Recorder::new(&log).hook(|ctx, message| {
        if message == "UPGRADE" {
            ctx.pipeline().remove("upgrade").unwrap();
        }
    });
    let (mut protocol, _t) = connect(pipeline, handler);
    protocol.data_received(Bytes::from_static(b"abc"));
    assert_eq!(log.take(), ["str UPGRADE", "bytes bc"]);
    assert!(names(protocol.pipeline()).is_empty());
    protocol.data_received(Bytes::from_static(b"a"));
    assert_eq!(log.take(), ["bytes a"]);
}

#[test]
fn leftovers_of_a_stage_removed_mid_stream_come_before_later_output_of_earlier_stages() {
    // Frames, then lines inside them, then UTF-8. On "UP" the line decoder
    // goes: the "b" it still holds must reach the handler before the next
    // frame's "c\n", which the frame decoder only cuts afterwards.
    let log = Log::default();
    let run = |chunks: &[&[u8]]| {
        let log = log.clone();
        let handler = Recorder::new(&log).hook(|ctx, line| {
            if line == "UP" {
                ctx.pipeline().remove("lines").unwrap();
            }
        });
        let pipeline = lines_and_strings();
        pipeline
            .add_first("frames", Stage::decoder(TinyLength))
            .unwrap();
        let (mut protocol, _t) = connect(pipeline, handler);
        for chunk in chunks {
            protocol.data_received(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(names(protocol.pipeline()), ["frames", "utf8"]);
        log.take()
    };
    let input = b"\x06a\nUP\nb\x02c\n";
    let expected = ["str a", "str UP", "str b", "str c\n"];
    assert_eq!(run(&[input]), expected);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(run(&[a, b]), expected, "split at {at}");
    }
}

#[test]
fn a_stage_removed_while_decoding_at_eof_hands_its_leftovers_on_before_eof() {
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap()
        .add_last("spaces", Stage::decoder(SpaceSplitter))
        .unwrap()
        .add_last("utf8", Stage::message_decoder(StringDecoder))
        .unwrap();
    let handler = Recorder::new(&log).hook(|ctx, word| {
        if word == "UP" {
            ctx.pipeline().remove("spaces").unwrap();
        }
    });
    let (mut protocol, _t) = connect(pipeline, handler);
    protocol.data_received(Bytes::from("a b \nUP c d"));
    assert_eq!(log.take(), ["str a", "str b"]);
    // The last line comes out of the line decoder at EOF; the splitter,
    // removed after its first word, hands "c d" on whole.
    assert!(!protocol.eof_received());
    assert_eq!(log.take(), ["str UP", "str c d", "eof"]);
}

#[test]
fn removing_a_decoder_from_outside_a_callback_delivers_its_leftovers_at_once() {
    // ByteToMessageDecoder.handlerRemoved fires the leftover bytes down the
    // pipeline at once; so does remove here, outside any callback (a
    // timer, the owner of the protocol). testInternalBufferClearReadPartly's
    // case: the decoder holds "b" when it goes, and nothing is lost or
    // reordered around what is read later or the EOF.
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap();
    let (mut protocol, _t) = connect(pipeline, Recorder::new(&log));
    protocol.data_received(Bytes::from("a\nb"));
    assert_eq!(log.take(), ["bytes a"]);
    protocol.pipeline().remove("lines").unwrap();
    assert_eq!(log.take(), ["bytes b"]);
    protocol.data_received(Bytes::from("c\n"));
    assert_eq!(log.take(), ["bytes c\n"]);

    // The same with a stage after it, then EOF.
    let pipeline = lines_and_strings();
    let (mut protocol, _t) = connect(pipeline, Recorder::new(&log));
    protocol.data_received(Bytes::from("a\nb"));
    protocol.pipeline().remove("lines").unwrap();
    assert!(!protocol.eof_received());
    assert_eq!(log.take(), ["str a", "str b", "eof"]);
}

#[test]
fn replacing_a_decoder_from_outside_a_callback_hands_its_leftovers_to_the_new_one() {
    let log = Log::default();
    let (mut protocol, _t) = connect(lines_and_strings(), Recorder::new(&log));
    protocol.data_received(Bytes::from_static(b"hello\n\x03ab"));
    assert_eq!(log.take(), ["str hello"]);
    protocol
        .pipeline()
        .replace("lines", "frames", Stage::decoder(TinyLength))
        .unwrap();
    assert_eq!(names(protocol.pipeline()), ["frames", "utf8"]);
    // "\x03ab" went to the new decoder, which completes the frame with the
    // next read's "c".
    protocol.data_received(Bytes::from_static(b"c\x01d"));
    assert_eq!(log.take(), ["str abc", "str d"]);
}

#[test]
fn replacing_a_decoder_from_message_received_decodes_its_leftovers_in_the_same_read() {
    // The upgrade of the tests above, every frame of the new protocol
    // arriving in the read that carried "UPGRADE": all are delivered
    // before data_received returns, none waits for the next read.
    let log = Log::default();
    let (mut protocol, transport) = upgrading_protocol(&log);
    protocol.data_received(Bytes::from_static(b"UPGRADE\n\x02hi\x00\x03abc"));
    assert_eq!(log.take(), ["str UPGRADE", "str hi", "str ", "str abc"]);
    assert_eq!(transport.value(), b"OK\n");
}

// ------------------------------------------------ mutation at run time

#[test]
fn a_stage_added_from_message_received_sees_the_very_next_message() {
    let log = Log::default();
    let handler = Recorder::new(&log).hook(|ctx, line| match line {
        "loud" => {
            let upper = Stage::message_decoder(|s: String| Ok(s.to_uppercase()));
            ctx.pipeline().add_after("utf8", "upper", upper).unwrap();
        }
        "QUIET" => {
            ctx.pipeline().remove("upper").unwrap();
        }
        _ => {}
    });
    let (mut protocol, _t) = connect(lines_and_strings(), handler);
    protocol.data_received(Bytes::from("a\nloud\nb\nquiet\nc\n"));
    assert_eq!(
        log.take(),
        ["str a", "str loud", "str B", "str QUIET", "str c"]
    );
    assert_eq!(names(protocol.pipeline()), ["lines", "utf8"]);
}

#[test]
fn decoding_stops_once_the_connection_is_closing() {
    let log = Log::default();
    let handler = Recorder::new(&log).hook(|ctx, line| {
        if line == "quit" {
            ctx.lose_connection();
        }
    });
    let (mut protocol, transport) = connect(lines_and_strings(), handler);
    protocol.data_received(Bytes::from("a\nquit\nb\nc\n"));
    protocol.data_received(Bytes::from("d\n"));
    assert_eq!(log.take(), ["str a", "str quit"]);
    assert!(transport.disconnecting());
}

#[test]
fn at_eof_each_stage_decodes_what_is_left_in_order() {
    let log = Log::default();
    // Two frame decoders in a row: the second gets its end of input only
    // after the first's last frame.
    let pipeline = Pipeline::new();
    pipeline
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(64)))
        .unwrap()
        .add_last("spaces", Stage::decoder(SpaceSplitter))
        .unwrap();
    let (mut protocol, _t) = connect(pipeline, Recorder::new(&log));
    protocol.data_received(Bytes::from("a b\nc d"));
    assert_eq!(log.take(), ["bytes a"]);
    assert!(!protocol.eof_received());
    // The line decoder's last line first, then the splitter's end: its
    // stream is "a b" + "c d" (delimiters stripped), so "bc", then "d".
    assert_eq!(log.take(), ["bytes bc", "bytes d", "eof"]);
}

/// Splits at spaces; at EOF what is left is one more item.
#[derive(Debug, Clone)]
struct SpaceSplitter;

impl Decoder for SpaceSplitter {
    type Item = Bytes;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let Some(at) = src.iter().position(|&b| b == b' ') else {
            return Ok(None);
        };
        let item = src.split_to(at).freeze();
        let _ = src.split_to(1);
        Ok(Some(item))
    }
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        match self.decode(src)? {
            None if !src.is_empty() => Ok(Some(src.split().freeze())),
            other => Ok(other),
        }
    }
}

// -------------------------------------------------------------- exceptions

#[test]
fn a_recoverable_error_reaches_exception_caught_and_decoding_goes_on() {
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline
        .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(3)))
        .unwrap();
    let (mut protocol, transport) = connect(pipeline, Recorder::new(&log).tolerant());
    protocol.data_received(Bytes::from("ok\ntoolong\nfin\n"));
    assert_eq!(
        log.take(),
        [
            "bytes ok",
            "error frame length (7) exceeds the allowed maximum (3)",
            "bytes fin"
        ]
    );
    assert!(!transport.disconnecting());
}

#[test]
fn the_default_exception_caught_closes_the_connection_with_the_error() {
    struct Quiet(Log);
    impl PipelineHandler for Quiet {
        fn message_received(&mut self, _: &PipelineContext, message: Message) {
            self.0.push(describe(&message));
        }
    }
    let log = Log::default();
    let (mut protocol, transport) = connect(lines_and_strings(), Quiet(log.clone()));
    protocol.data_received(Bytes::from_static(b"a\n\xff\nb\n"));
    assert_eq!(log.take(), ["str a"]);
    assert!(transport.failure().unwrap().contains("UTF-8"));
}

#[test]
fn an_unrecoverable_error_closes_the_connection_even_if_the_handler_does_not() {
    let log = Log::default();
    let (mut protocol, transport) = connect(lines_and_strings(), Recorder::new(&log).tolerant());
    protocol.data_received(Bytes::from_static(b"a\n\xff\nb\n"));
    protocol.data_received(Bytes::from_static(b"c\n"));
    let events = log.take();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], "str a");
    assert!(events[1].starts_with("error frame is not valid UTF-8"));
    assert_eq!(
        transport.failure().unwrap(),
        "corrupt input: unrecoverable decode error"
    );
}

#[test]
fn errors_from_a_closure_stage_and_a_truncated_frame_at_eof_reach_exception_caught() {
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline
        .add_last("frames", Stage::decoder(TinyLength))
        .unwrap()
        .add_last(
            "picky",
            Stage::inbound(|message, out| {
                let frame = message.downcast::<Bytes>().unwrap();
                if frame.is_empty() {
                    return Err(DecodeError::TooLongFrame { length: 0, max: 0 });
                }
                out.push(frame);
                Ok(())
            }),
        )
        .unwrap();
    let (mut protocol, transport) = connect(pipeline, Recorder::new(&log).tolerant());
    protocol.data_received(Bytes::from_static(b"\x01a\x00\x01b\x05ab"));
    assert!(!protocol.eof_received());
    assert_eq!(
        log.take(),
        [
            "bytes a",
            "error frame length (0) exceeds the allowed maximum (0)",
            "bytes b",
            "error connection closed with 3 bytes of an unfinished frame",
            "eof"
        ]
    );
    assert!(transport.disconnecting());
}

#[test]
fn a_decoder_that_yields_without_consuming_is_an_error() {
    #[derive(Debug)]
    struct Stuck;
    impl Decoder for Stuck {
        type Item = u32;
        fn decode(&mut self, _: &mut BytesMut) -> Result<Option<u32>, DecodeError> {
            Ok(Some(1))
        }
    }
    let log = Log::default();
    let pipeline = Pipeline::new();
    pipeline.add_last("stuck", Stage::decoder(Stuck)).unwrap();
    let (mut protocol, transport) = connect(pipeline, Recorder::new(&log));
    protocol.data_received(Bytes::from("x"));
    let events = log.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("without consuming input"), "{events:?}");
    assert!(transport.disconnecting());
}

#[test]
fn an_encoding_error_closes_the_connection() {
    let pipeline = Pipeline::new();
    pipeline
        .add_last(
            "limit",
            Stage::outbound(|message, out| {
                let s = message.downcast::<String>().unwrap();
                if s.len() > 3 {
                    return Err(EncodeError::TooLong {
                        length: s.len(),
                        max: 3,
                    });
                }
                out.push(s);
                Ok(())
            }),
        )
        .unwrap()
        .add_first("encoder", Stage::encoder::<String, _>(StringEncoder))
        .unwrap();
    let (protocol, transport) = connect(pipeline, Recorder::new(&Log::default()));
    ctx(&protocol).write(String::from("abc"));
    assert_eq!(transport.value(), b"abc");
    ctx(&protocol).write(String::from("abcd"));
    assert!(transport
        .failure()
        .unwrap()
        .contains("longer than the maximum"));
}

// ------------------------------------------------------------ real sockets

/// Upper-cases lines; closes on "bye".
struct Upper(Log);

impl PipelineHandler for Upper {
    fn message_received(&mut self, ctx: &PipelineContext, message: Message) {
        let line = *message.downcast::<String>().expect("a String");
        ctx.write(line.to_uppercase());
        if line == "bye" {
            ctx.lose_connection();
        }
    }
    fn connection_lost(&mut self, _ctx: &PipelineContext, reason: &Reason) {
        self.0.push(format!("lost clean={}", reason.is_clean()));
    }
}

#[test]
fn a_pipeline_per_connection_over_loopback() {
    let reactor = Reactor::new().unwrap();
    let log = Log::default();
    let server_log = log.clone();
    let factory = move |_peer| {
        let pipeline = Pipeline::new();
        pipeline
            .add_last("lines", Stage::decoder(LineBasedFrameDecoder::new(1024)))
            .unwrap()
            .add_last("utf8", Stage::message_decoder(StringDecoder))
            .unwrap()
            .add_last("encoder", Stage::encoder::<String, _>(LineEncoder::new()))
            .unwrap();
        PipelineProtocol::new(pipeline, Upper(server_log.clone()))
    };
    let replies = serve(&reactor, factory, |addr, handle| {
        let talk = || -> std::io::Result<Vec<u8>> {
            let mut replies = Vec::new();
            // Two connections, each with its own pipeline (and buffers).
            for text in [&b"hello\r\nw\xc3\xb6r"[..], &b"one\ntwo\n"[..]] {
                let mut stream = TcpStream::connect(addr)?;
                stream.set_read_timeout(Some(LIMIT))?;
                stream.write_all(text)?;
                thread::sleep(Duration::from_millis(20));
                stream.write_all(b"ld\nbye\n")?;
                stream.read_to_end(&mut replies)?;
                stream.shutdown(Shutdown::Both).ok();
            }
            Ok(replies)
        };
        let result = talk();
        handle.stop();
        result
    });
    let replies = replies.expect("the client talked");
    assert_eq!(
        String::from_utf8(replies).unwrap(),
        "HELLO\nWÖRLD\nBYE\nONE\nTWO\nLD\nBYE\n"
    );
    assert_eq!(log.take(), ["lost clean=true", "lost clean=true"]);
}
