//! [`MessageCodec`]: whole WebSocket messages, reassembled from frames.

use bytes::{Bytes, BytesMut};

use super::frame::{Frame, FrameCodec, OpCode};
use super::{close_code, Role, WebSocketError};
use crate::codec::{ConfigError, DecodeError, Decoder, EncodeError, Encoder};

/// The default maximum message size: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// The largest maximum message size a [`MessageCodec`] can be configured
/// with: 64 MiB.
pub const HARD_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A WebSocket message: a whole (reassembled) data message or a control
/// frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, valid UTF-8.
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the peer expects a pong with the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: its status code and reason, or `None` for an empty
    /// close payload.
    Close(Option<(u16, String)>),
}

impl Message {
    /// The message as one final frame.
    pub fn into_frame(self) -> Frame {
        match self {
            Message::Text(text) => Frame::new(OpCode::Text, text),
            Message::Binary(data) => Frame::new(OpCode::Binary, data),
            Message::Ping(data) => Frame::new(OpCode::Ping, data),
            Message::Pong(data) => Frame::new(OpCode::Pong, data),
            Message::Close(None) => Frame::new(OpCode::Close, Bytes::new()),
            Message::Close(Some((code, reason))) => Frame::close(code, &reason),
        }
    }
}

/// Whether `code` may appear in a close frame on the wire (section 7.4):
/// the defined codes 1000-1003 and 1007-1014, and the registered and
/// private ranges 3000-4999. 1004 is reserved, and 1005, 1006 and 1015
/// stand for "no code", "closed abnormally" and "TLS failed" in APIs only.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close frame's payload (section 5.5.1).
///
/// # Errors
///
/// A one-byte payload or a code that must not be sent: 1002. A reason that
/// is not UTF-8: 1007.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, WebSocketError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WebSocketError::new(
            close_code::PROTOCOL_ERROR,
            "close payload of one byte",
        )),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(WebSocketError::new(
                    close_code::PROTOCOL_ERROR,
                    format!("close code {code} must not be sent"),
                ));
            }
            let reason = std::str::from_utf8(reason).map_err(|err| {
                WebSocketError::new(
                    close_code::INVALID_PAYLOAD,
                    format!("close reason is not UTF-8: {err}"),
                )
            })?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// Configures a [`MessageCodec`]; from [`MessageCodec::builder`].
#[derive(Debug, Clone)]
pub struct MessageCodecBuilder {
    frames: super::frame::FrameCodecBuilder,
    max_message_size: usize,
}

impl MessageCodecBuilder {
    /// The longest frame payload accepted (default 1 MiB, at most 16
    /// MiB); see [`FrameCodecBuilder::max_frame_payload`](super::FrameCodecBuilder::max_frame_payload).
    pub fn max_frame_payload(mut self, max: usize) -> Self {
        self.frames = self.frames.max_frame_payload(max);
        self
    }

    /// The longest message accepted, all its fragments together (default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`], 1 MiB; at most
    /// [`HARD_MAX_MESSAGE_SIZE`], 64 MiB).
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = max;
        self
    }

    /// The codec.
    ///
    /// # Errors
    ///
    /// The frame configuration is invalid, or the maximum message size is
    /// 0 or over [`HARD_MAX_MESSAGE_SIZE`].
    pub fn build(self) -> Result<MessageCodec, ConfigError> {
        if !(1..=HARD_MAX_MESSAGE_SIZE).contains(&self.max_message_size) {
            return Err(ConfigError::new(format!(
                "max_message_size must be from 1 to {HARD_MAX_MESSAGE_SIZE}, not {}",
                self.max_message_size
            )));
        }
        Ok(MessageCodec {
            frames: self.frames.build()?,
            max_message_size: self.max_message_size,
            open: None,
            failed: false,
        })
    }
}

/// A fragmented message being reassembled.
#[derive(Debug, Clone)]
struct Open {
    text: bool,
    data: BytesMut,
    /// How much of `data` is known to be valid UTF-8 (text only): the
    /// rest is at most the first 3 bytes of a character split between
    /// fragments.
    checked: usize,
}

/// Decodes whole [`Message`]s (reassembling fragmented ones) and encodes
/// messages as single frames: a [`FrameCodec`] plus the message rules of
/// RFC 6455 sections 5.4-5.6; Netty's `WebSocketFrameAggregator` and
/// `Utf8FrameValidator` over its frame codec.
///
/// ```text
/// Text, FIN=0 "Hel"  ->  (open text message)
/// Ping, FIN=1 "x"    ->  Message::Ping("x")      control frames interleave
/// Cont, FIN=1 "lo"   ->  Message::Text("Hello")
/// ```
///
/// Control frames come out as soon as they are decoded, also in the middle
/// of a fragmented message. Text is checked for UTF-8 fragment by
/// fragment, so an invalid sequence fails as soon as its fragment arrives,
/// even though the message is not finished.
///
/// # Errors
///
/// Besides the [`FrameCodec`]'s errors, each a [`WebSocketError`] inside
/// [`DecodeError::Other`], after which the decoder stops (it drops all
/// input and returns `Ok(None)`):
///
/// | input | close code |
/// |---|---|
/// | a continuation frame with no message open | 1002 |
/// | a text or binary frame while a message is open | 1002 |
/// | a message longer than the maximum: reported when the header of the frame that would pass it arrives | 1009 |
/// | text that is not UTF-8 (or ends in the middle of a character) | 1007 |
/// | a close payload of one byte, or with a code that must not be sent ([`is_valid_close_code`]) | 1002 |
/// | a close reason that is not UTF-8 | 1007 |
///
/// # Examples
///
/// The RFC's fragmented unmasked text message, as a client reads it:
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::Decoder;
/// use twill_protocols::websocket::{Message, MessageCodec, Role};
///
/// let mut codec = MessageCodec::new(Role::Client);
/// let mut input = BytesMut::from(&b"\x01\x03Hel\x80\x02lo"[..]);
/// assert_eq!(codec.decode(&mut input)?, Some(Message::Text("Hello".into())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MessageCodec {
    frames: FrameCodec,
    max_message_size: usize,
    open: Option<Open>,
    failed: bool,
}

impl MessageCodec {
    /// A codec for `role` with the default maxima (1 MiB frames and
    /// messages).
    pub fn new(role: Role) -> MessageCodec {
        MessageCodec {
            frames: FrameCodec::new(role),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            open: None,
            failed: false,
        }
    }

    /// A builder for `role`'s codec, with the defaults above.
    pub fn builder(role: Role) -> MessageCodecBuilder {
        MessageCodecBuilder {
            frames: FrameCodec::builder(role),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// The side of the connection this codec is on.
    pub fn role(&self) -> Role {
        self.frames.role()
    }

    /// The longest message accepted.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The frame codec underneath.
    pub fn frame_codec(&self) -> &FrameCodec {
        &self.frames
    }

    fn fail(&mut self, src: &mut BytesMut, err: WebSocketError) -> DecodeError {
        self.failed = true;
        self.open = None;
        src.clear();
        DecodeError::Other(Box::new(err))
    }

    /// Checks the UTF-8 of an open text message from `checked` on.
    fn check_utf8(open: &mut Open, fin: bool) -> Result<(), WebSocketError> {
        match std::str::from_utf8(&open.data[open.checked..]) {
            Ok(_) => {
                open.checked = open.data.len();
                Ok(())
            }
            Err(err) if err.error_len().is_none() && !fin => {
                open.checked += err.valid_up_to();
                Ok(())
            }
            Err(err) => Err(WebSocketError::new(
                close_code::INVALID_PAYLOAD,
                format!("text message is not UTF-8: {err}"),
            )),
        }
    }

    /// Handles one data frame; a whole message when it completes one.
    fn data_frame(&mut self, frame: Frame) -> Result<Option<Message>, WebSocketError> {
        let mut open = match (frame.opcode, self.open.take()) {
            (OpCode::Continuation, None) => {
                return Err(WebSocketError::new(
                    close_code::PROTOCOL_ERROR,
                    "continuation frame with no message to continue",
                ))
            }
            (OpCode::Continuation, Some(mut open)) => {
                open.data.extend_from_slice(&frame.payload);
                open
            }
            (_, Some(_)) => {
                return Err(WebSocketError::new(
                    close_code::PROTOCOL_ERROR,
                    "new data frame while a fragmented message is unfinished",
                ))
            }
            (opcode, None) if frame.fin => {
                // An unfragmented message: no reassembly buffer.
                return match opcode {
                    OpCode::Text => {
                        let text = String::from_utf8(Vec::from(frame.payload)).map_err(|err| {
                            WebSocketError::new(
                                close_code::INVALID_PAYLOAD,
                                format!("text message is not UTF-8: {}", err.utf8_error()),
                            )
                        })?;
                        Ok(Some(Message::Text(text)))
                    }
                    _ => Ok(Some(Message::Binary(frame.payload))),
                };
            }
            (opcode, None) => Open {
                text: opcode == OpCode::Text,
                data: BytesMut::from(&frame.payload[..]),
                checked: 0,
            },
        };
        if open.text {
            Self::check_utf8(&mut open, frame.fin)?;
        }
        if !frame.fin {
            self.open = Some(open);
            return Ok(None);
        }
        Ok(Some(if open.text {
            // Checked fragment by fragment above, so this cannot fail; the
            // error is mapped rather than unwrapped all the same.
            let text = String::from_utf8(Vec::from(open.data.freeze()))
                .map_err(|err| WebSocketError::new(close_code::INVALID_PAYLOAD, err.to_string()))?;
            Message::Text(text)
        } else {
            Message::Binary(open.data.freeze())
        }))
    }
}

impl Decoder for MessageCodec {
    type Item = Message;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        if self.failed {
            src.clear();
            return Ok(None);
        }
        loop {
            let buffered = self.open.as_ref().map_or(0, |open| open.data.len());
            // A frame that would take the message past its maximum is
            // refused from its header.
            let limit = self.max_message_size - buffered;
            let frame = match self.frames.decode_limited(src, limit) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(err) => {
                    self.failed = true;
                    self.open = None;
                    return Err(err);
                }
            };
            let result = match frame.opcode {
                OpCode::Ping => Ok(Some(Message::Ping(frame.payload))),
                OpCode::Pong => Ok(Some(Message::Pong(frame.payload))),
                OpCode::Close => {
                    parse_close_payload(&frame.payload).map(|c| Some(Message::Close(c)))
                }
                _ => self.data_frame(frame),
            };
            match result {
                Ok(Some(message)) => return Ok(Some(message)),
                Ok(None) => continue,
                Err(err) => return Err(self.fail(src, err)),
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() && self.open.is_none() => Ok(None),
            None => {
                let remaining = src.len() + self.open.take().map_or(0, |open| open.data.len());
                self.failed = true;
                src.clear();
                Err(DecodeError::Truncated { remaining })
            }
        }
    }
}

impl Encoder<Message> for MessageCodec {
    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.frames.encode(message.into_frame(), dst)
    }

    fn encode_parts(
        &mut self,
        message: Message,
        dst: &mut BytesMut,
    ) -> Result<Option<Bytes>, EncodeError> {
        self.frames.encode_parts(message.into_frame(), dst)
    }
}

impl Encoder<Frame> for MessageCodec {
    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.frames.encode(frame, dst)
    }

    fn encode_parts(
        &mut self,
        frame: Frame,
        dst: &mut BytesMut,
    ) -> Result<Option<Bytes>, EncodeError> {
        self.frames.encode_parts(frame, dst)
    }
}
