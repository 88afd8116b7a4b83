//! The WebSocket side: the opening handshake, the masked frames every
//! connection sends and the echoes it expects back.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The largest message `--size` allows: a frame with a 16-bit length.
pub const MAX_MESSAGE: usize = 65_535;

/// Distinct messages a connection cycles through, so that a lost,
/// repeated or reordered echo shows as a wrong byte.
const DISTINCT: usize = 16;

/// The longest handshake response head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// The opening handshake's key and its accept value, RFC 6455's own
/// example (section 1.3): every connection uses them, which a server
/// cannot tell from fresh ones.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The opcode byte of a final binary frame.
const FIN_BINARY: u8 = 0x82;

/// Opens the WebSocket on `stream` (blocking): sends the upgrade request
/// for `/` and checks the `101` response and its `Sec-WebSocket-Accept`.
/// The server must send nothing past the response's head until it gets a
/// message.
pub fn open(mut stream: &TcpStream, addr: SocketAddr) -> io::Result<()> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(bad("the server closed during the handshake".into()));
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return Err(bad("a handshake response longer than 8 KiB".into()));
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") && !head.ends_with(b"\r\n\r\n") {
            return Err(bad("bytes after the handshake response".into()));
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(bad(format!("status line {status:?}, expected 101")));
    }
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, value)| value.trim());
    if accept != Some(ACCEPT) {
        return Err(bad(format!(
            "Sec-WebSocket-Accept {accept:?}, expected {ACCEPT:?}"
        )));
    }
    Ok(())
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The frames of one message size: the requests a connection cycles
/// through and the echoes expected back.
pub struct Frames {
    /// [`DISTINCT`] masked client frames, back to back.
    pub requests: Vec<u8>,
    /// Bytes of one client frame.
    pub request_len: usize,
    pub expected: Expected,
}

impl Frames {
    /// The frames for messages of `size` bytes (1 to [`MAX_MESSAGE`]).
    pub fn new(size: usize) -> Frames {
        assert!((1..=MAX_MESSAGE).contains(&size));
        let mut requests = Vec::new();
        let mut echoes = Vec::new();
        for m in 0..DISTINCT {
            let payload: Vec<u8> = (0..size)
                .map(|j| (m * 31 + j * 7 + j / 251) as u8)
                .collect();
            let mask = [0x5a ^ m as u8, 0xc3, 0x17, 0x8e];
            requests.extend_from_slice(&header(size, true));
            requests.extend_from_slice(&mask);
            requests.extend(payload.iter().enumerate().map(|(j, b)| b ^ mask[j % 4]));
            echoes.extend_from_slice(&header(size, false));
            echoes.extend_from_slice(&payload);
        }
        Frames {
            request_len: requests.len() / DISTINCT,
            requests,
            expected: Expected::new(echoes, DISTINCT),
        }
    }
}

/// A binary frame's header for a `size`-byte payload, with the mask bit
/// if `masked` (the key follows it).
fn header(size: usize, masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    if size <= 125 {
        vec![FIN_BINARY, mask_bit | size as u8]
    } else {
        let [hi, lo] = (size as u16).to_be_bytes();
        vec![FIN_BINARY, mask_bit | 126, hi, lo]
    }
}

/// The byte stream of echoes a connection expects: a period of frames
/// followed by a copy of its start, so any read's worth of it is one
/// contiguous slice.
pub struct Expected {
    buf: Vec<u8>,
    period: usize,
    /// Bytes of one echoed frame.
    frame_len: usize,
}

impl Expected {
    fn new(period: Vec<u8>, frames: usize) -> Expected {
        let n = period.len();
        let buf = period
            .iter()
            .copied()
            .cycle()
            .take(n + super::READ_CHUNK)
            .collect();
        Expected {
            buf,
            period: n,
            frame_len: n / frames,
        }
    }

    /// Compares `got`, read after `recvd` bytes, with the stream; returns
    /// how many echoes it completed.
    pub fn check(&self, recvd: u64, got: &[u8]) -> Result<u64, String> {
        let start = (recvd % self.period as u64) as usize;
        let want = &self.buf[start..start + got.len()];
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            let at = recvd + i as u64;
            return Err(format!(
                "echoed byte {at} (message {}, byte {} of its frame) is {:#04x}, expected {:#04x}",
                at / self.frame_len as u64,
                at % self.frame_len as u64,
                got[i],
                want[i]
            ));
        }
        let len = self.frame_len as u64;
        Ok((recvd + got.len() as u64) / len - recvd / len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_unmask_to_their_echoes() {
        for size in [1, 64, 125, 126, 4096] {
            let f = Frames::new(size);
            let head = if size <= 125 { 2 } else { 4 };
            assert_eq!(f.request_len, head + 4 + size);
            let first = &f.requests[..f.request_len];
            assert_eq!(first[1] & 0x80, 0x80, "masked");
            let mask = &first[head..head + 4];
            let mut echo = header(size, false);
            echo.extend(
                first[head + 4..]
                    .iter()
                    .enumerate()
                    .map(|(j, b)| b ^ mask[j % 4]),
            );
            assert_eq!(f.expected.check(0, &echo), Ok(1));
            let second = f.expected.check(echo.len() as u64, &echo);
            assert!(second.is_err(), "the second message differs from the first");
        }
    }
}
