//! [`FrameCodec`]: the base framing of RFC 6455 (section 5.2), one frame at
//! a time.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{close_code, Role, WebSocketError};
use crate::codec::{ConfigError, DecodeError, Decoder, EncodeError, Encoder};

/// The longest frame payload a [`FrameCodec`] can be configured to accept:
/// 16 MiB.
pub const HARD_MAX_FRAME_PAYLOAD: usize = 16 * 1024 * 1024;

/// The default maximum frame payload: 1 MiB.
pub const DEFAULT_MAX_FRAME_PAYLOAD: usize = 1024 * 1024;

/// The longest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a frame carries (its 4-bit opcode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: the next fragment of a text or binary message.
    Continuation,
    /// `0x1`: the first (or only) frame of a text message.
    Text,
    /// `0x2`: the first (or only) frame of a binary message.
    Binary,
    /// `0x8`: the close handshake.
    Close,
    /// `0x9`: a ping, to be answered with a pong.
    Ping,
    /// `0xA`: a pong, the answer to a ping (or a one-way heartbeat).
    Pong,
}

impl OpCode {
    /// The opcode of the 4-bit value, or `None` for the reserved ones
    /// (`0x3`-`0x7`, `0xB`-`0xF`).
    pub fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit value on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Whether this is a control frame's opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// One WebSocket frame, its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Whether this is the last frame of its message (always set on
    /// control frames).
    pub fin: bool,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The application data, unmasked.
    pub payload: Bytes,
}

impl Frame {
    /// A final frame of `opcode` carrying `payload`.
    pub fn new(opcode: OpCode, payload: impl Into<Bytes>) -> Frame {
        Frame {
            fin: true,
            opcode,
            payload: payload.into(),
        }
    }

    /// A close frame with `code` and `reason` (the reason is cut to fit
    /// the 125-byte control payload, at a character boundary).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = BytesMut::with_capacity(2 + end);
        payload.put_u16(code);
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Frame::new(OpCode::Close, payload.freeze())
    }
}

/// XORs `payload` with the masking `key` (section 5.3), the `key` byte
/// for `payload[i]` being `key[(offset + i) % 4]`. Masking and unmasking
/// are the same operation.
///
/// Eight bytes at a time: the key repeated twice is one `u64`, and
/// `chunks_exact_mut` leaves the compiler no bounds to check.
pub fn apply_mask(payload: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word: [u8; 8] = (&*chunk).try_into().expect("8 bytes");
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// A small xorshift generator for masking keys and handshake keys, seeded
/// from the standard library's random hash keys and the clock (no extra
/// dependency for a source of randomness).
#[derive(Debug)]
pub(crate) struct KeyGenerator(u64);

/// A clone is seeded afresh: codecs are built once and cloned for each
/// connection, and two connections must not mask with the same keys.
impl Clone for KeyGenerator {
    fn clone(&self) -> Self {
        KeyGenerator::new()
    }
}

impl KeyGenerator {
    pub(crate) fn new() -> KeyGenerator {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        // xorshift must not start at zero.
        KeyGenerator(hasher.finish() | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        // The raw state would reveal the next keys; a multiply scrambles it
        // (xorshift64*).
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn next_key(&mut self) -> [u8; 4] {
        ((self.next_u64() >> 32) as u32).to_be_bytes()
    }
}

/// Configures a [`FrameCodec`]; from [`FrameCodec::builder`].
#[derive(Debug, Clone)]
pub struct FrameCodecBuilder {
    role: Role,
    max_frame_payload: usize,
}

impl FrameCodecBuilder {
    /// The longest frame payload accepted (default
    /// [`DEFAULT_MAX_FRAME_PAYLOAD`], 1 MiB; at most
    /// [`HARD_MAX_FRAME_PAYLOAD`], 16 MiB).
    pub fn max_frame_payload(mut self, max: usize) -> Self {
        self.max_frame_payload = max;
        self
    }

    /// The codec.
    ///
    /// # Errors
    ///
    /// The maximum frame payload is below 125 (control frames must fit) or
    /// above [`HARD_MAX_FRAME_PAYLOAD`].
    pub fn build(self) -> Result<FrameCodec, ConfigError> {
        if !(MAX_CONTROL_PAYLOAD..=HARD_MAX_FRAME_PAYLOAD).contains(&self.max_frame_payload) {
            return Err(ConfigError::new(format!(
                "max_frame_payload must be from {MAX_CONTROL_PAYLOAD} to \
                 {HARD_MAX_FRAME_PAYLOAD}, not {}",
                self.max_frame_payload
            )));
        }
        Ok(FrameCodec {
            role: self.role,
            max_frame_payload: self.max_frame_payload,
            keys: KeyGenerator::new(),
            failed: false,
        })
    }
}

/// Decodes and encodes WebSocket frames (RFC 6455 section 5.2) for one
/// side of a connection: Netty's `WebSocket13FrameDecoder` and
/// `WebSocket13FrameEncoder` in one type.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-------+-+-------------+-------------------------------+
/// |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
/// |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
/// |N|V|V|V|       |S|             |   (if payload len==126/127)   |
/// | |1|2|3|       |K|             |                               |
/// +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
/// |     Extended payload length continued, if payload len == 127  |
/// + - - - - - - - - - - - - - - - +-------------------------------+
/// |                               | Masking-key, if MASK set to 1 |
/// +-------------------------------+-------------------------------+
/// | Masking-key (continued)       |          Payload Data         |
/// +-------------------------------- - - - - - - - - - - - - - - - +
/// :                     Payload Data continued ...                :
/// +---------------------------------------------------------------+
/// ```
///
/// A payload length of 0-125 is the length itself; 126 means a 16-bit
/// big-endian length follows, 127 a 64-bit one. The decoder delivers
/// [`Frame`]s with their payload unmasked; the encoder writes them, masked
/// with a fresh random key when the codec is a [`Role::Client`]'s.
///
/// # Errors
///
/// Every error is a [`WebSocketError`] inside [`DecodeError::Other`]
/// carrying the close code to send, and none is recoverable: the decoder
/// stops, drops all input from then on and returns `Ok(None)`. Header
/// errors are reported as soon as the bytes that show them arrive, before
/// the payload:
///
/// | input | close code |
/// |---|---|
/// | RSV1, RSV2 or RSV3 set (no extension is negotiated) | 1002 |
/// | a reserved opcode | 1002 |
/// | a server receiving an unmasked frame, a client a masked one | 1002 |
/// | a control frame with a payload over 125 bytes or without FIN | 1002 |
/// | a length not in its shortest form (126 for a length under 126, 127 for one under 65536) | 1002 |
/// | a 64-bit length with its most significant bit set | 1002 |
/// | a payload longer than the maximum (nothing of it is buffered) | 1009 |
///
/// Non-minimal length encodings are rejected: the RFC says the minimal
/// number of bytes MUST be used, and a peer that does not is broken or
/// probing. At EOF an unfinished frame is [`DecodeError::Truncated`].
///
/// The decoder reserves room for a whole frame as soon as its header is
/// read, so a large frame arriving in pieces is not copied over and over;
/// a peer can thus make a connection hold up to the maximum frame payload
/// with a header alone, which is what the maximum bounds.
///
/// # Differences from Netty
///
/// - Netty's decoder writes the Close frame itself on a protocol error
///   (`closeOnProtocolViolation`); here the code comes with the error
///   ([`WebSocketError::code`]) and a [`WebSocketSession`](super::WebSocketSession)
///   (or the caller) writes it, so the codec never touches a transport.
/// - The payload limit has a hard maximum (16 MiB) that the builder
///   enforces; Netty's `maxFramePayloadLength` takes any value.
///
/// # Encoding
///
/// The encoder rejects a control frame over 125 bytes or without FIN, and
/// a payload over 2^63 - 1 bytes, with [`EncodeError::TooLong`]. A server's
/// payloads go out without a copy (see [`Encoder::encode_parts`]).
///
/// # Examples
///
/// The RFC's single-frame unmasked text message, as a client reads it:
///
/// ```
/// use bytes::BytesMut;
/// use twill_protocols::codec::Decoder;
/// use twill_protocols::websocket::{FrameCodec, OpCode, Role};
///
/// let mut codec = FrameCodec::new(Role::Client);
/// let mut input = BytesMut::from(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f][..]);
/// let frame = codec.decode(&mut input)?.unwrap();
/// assert!(frame.fin);
/// assert_eq!(frame.opcode, OpCode::Text);
/// assert_eq!(frame.payload, "Hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FrameCodec {
    role: Role,
    max_frame_payload: usize,
    keys: KeyGenerator,
    /// An error was reported: all input is dropped.
    failed: bool,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

impl FrameCodec {
    /// A codec for `role` with the default maximum frame payload (1 MiB).
    pub fn new(role: Role) -> FrameCodec {
        FrameCodec {
            role,
            max_frame_payload: DEFAULT_MAX_FRAME_PAYLOAD,
            keys: KeyGenerator::new(),
            failed: false,
        }
    }

    /// A builder for `role`'s codec, with the defaults above.
    pub fn builder(role: Role) -> FrameCodecBuilder {
        FrameCodecBuilder {
            role,
            max_frame_payload: DEFAULT_MAX_FRAME_PAYLOAD,
        }
    }

    /// The side of the connection this codec is on.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The longest frame payload accepted.
    pub fn max_frame_payload(&self) -> usize {
        self.max_frame_payload
    }

    /// Stops the decoder after an error.
    fn fail(&mut self, src: &mut BytesMut, code: u16, why: String) -> DecodeError {
        self.failed = true;
        src.clear();
        DecodeError::Other(Box::new(WebSocketError::new(code, why)))
    }

    /// Reads the header at the front of `src`, checking what can be checked
    /// as soon as its bytes are there; `Ok(None)` if it is not complete.
    /// `limit` is the longest data frame payload acceptable right now (the
    /// message codec lowers it to what is left of its message allowance).
    fn header(&mut self, src: &mut BytesMut, limit: usize) -> Result<Option<Header>, DecodeError> {
        if src.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (src[0], src[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            let why = format!("reserved bits set ({:#x}) with no extension", b0 & 0x70);
            return Err(self.fail(src, close_code::PROTOCOL_ERROR, why));
        }
        let Some(opcode) = OpCode::from_u8(b0 & 0x0f) else {
            let why = format!("reserved opcode {:#x}", b0 & 0x0f);
            return Err(self.fail(src, close_code::PROTOCOL_ERROR, why));
        };
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => {
                let why = "unmasked frame from a client".to_owned();
                return Err(self.fail(src, close_code::PROTOCOL_ERROR, why));
            }
            (Role::Client, true) => {
                let why = "masked frame from a server".to_owned();
                return Err(self.fail(src, close_code::PROTOCOL_ERROR, why));
            }
            _ => {}
        }
        let short = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                let why = format!("fragmented control frame ({opcode:?})");
                return Err(self.fail(src, close_code::PROTOCOL_ERROR, why));
            }
            if usize::from(short) > MAX_CONTROL_PAYLOAD {
                let why = format!("control frame ({opcode:?}) longer than 125 bytes");
                return Err(self.fail(src, close_code::PROTOCOL_ERROR, why));
            }
        }
        let extended = match short {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + extended + if masked { 4 } else { 0 };
        if src.len() < 2 + extended {
            return Ok(None);
        }
        let length = match extended {
            0 => u64::from(short),
            2 => u64::from(u16::from_be_bytes([src[2], src[3]])),
            _ => u64::from_be_bytes(src[2..10].try_into().expect("8 bytes")),
        };
        if length >> 63 != 0 {
            let why = format!("64-bit payload length with its top bit set ({length:#x})");
            return Err(self.fail(src, close_code::PROTOCOL_ERROR, why));
        }
        if (extended == 2 && length < 126) || (extended == 8 && length <= 0xffff) {
            let why = format!("payload length {length} not in its shortest form");
            return Err(self.fail(src, close_code::PROTOCOL_ERROR, why));
        }
        // Control frames are bounded by their 125 bytes above, whatever is
        // left of a message's allowance.
        if !opcode.is_control() && length > limit as u64 {
            let why = format!("frame payload of {length} bytes is over the limit of {limit}");
            return Err(self.fail(src, close_code::MESSAGE_TOO_BIG, why));
        }
        if src.len() < header_len {
            return Ok(None);
        }
        let mask = masked.then(|| {
            let at = header_len - 4;
            [src[at], src[at + 1], src[at + 2], src[at + 3]]
        });
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            header_len,
            payload_len: length as usize,
        }))
    }

    /// Decodes one frame; a data frame's payload must be at most `limit`
    /// bytes.
    pub(crate) fn decode_limited(
        &mut self,
        src: &mut BytesMut,
        limit: usize,
    ) -> Result<Option<Frame>, DecodeError> {
        if self.failed {
            src.clear();
            return Ok(None);
        }
        let limit = limit.min(self.max_frame_payload);
        let Some(header) = self.header(src, limit)? else {
            return Ok(None);
        };
        let total = header.header_len + header.payload_len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(header.header_len);
        let mut payload = src.split_to(header.payload_len);
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        Ok(Some(Frame {
            fin: header.fin,
            opcode: header.opcode,
            payload: payload.freeze(),
        }))
    }

    /// Writes the header of a frame (and the masking key, if any);
    /// returns the key.
    fn write_header(
        &mut self,
        frame: &Frame,
        dst: &mut BytesMut,
    ) -> Result<Option<[u8; 4]>, EncodeError> {
        let len = frame.payload.len();
        if frame.opcode.is_control() && (len > MAX_CONTROL_PAYLOAD || !frame.fin) {
            return Err(EncodeError::TooLong {
                length: len,
                max: MAX_CONTROL_PAYLOAD,
            });
        }
        if len as u64 > i64::MAX as u64 {
            return Err(EncodeError::TooLong {
                length: len,
                max: i64::MAX as usize,
            });
        }
        let key = (self.role == Role::Client).then(|| self.keys.next_key());
        let mask_bit = if key.is_some() { 0x80 } else { 0 };
        dst.reserve(14);
        dst.put_u8(if frame.fin { 0x80 } else { 0 } | frame.opcode.as_u8());
        if len < 126 {
            dst.put_u8(mask_bit | len as u8);
        } else if len <= 0xffff {
            dst.put_u8(mask_bit | 126);
            dst.put_u16(len as u16);
        } else {
            dst.put_u8(mask_bit | 127);
            dst.put_u64(len as u64);
        }
        if let Some(key) = key {
            dst.extend_from_slice(&key);
        }
        Ok(key)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        self.decode_limited(src, usize::MAX)
    }
}

impl Encoder<Frame> for FrameCodec {
    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let key = self.write_header(&frame, dst)?;
        let start = dst.len();
        dst.extend_from_slice(&frame.payload);
        if let Some(key) = key {
            apply_mask(&mut dst[start..], key, 0);
        }
        Ok(())
    }

    fn encode_parts(
        &mut self,
        frame: Frame,
        dst: &mut BytesMut,
    ) -> Result<Option<Bytes>, EncodeError> {
        if self.role == Role::Client || frame.payload.len() < 64 {
            // Masking needs a copy anyway, and a small payload is cheaper
            // copied than written as a buffer of its own.
            return self.encode(frame, dst).map(|()| None);
        }
        self.write_header(&frame, dst)?;
        Ok(Some(frame.payload))
    }
}
