//! The HTTP side: the request every connection repeats, and the parsing
//! that counts whole responses.

use std::net::SocketAddr;

/// The body every response must carry.
pub const HELLO: &[u8] = b"Hello, World!";

/// The longest response head accepted; past it the response is wrong
/// rather than buffered for ever.
const MAX_HEAD: usize = 8 * 1024;

/// `GET / HTTP/1.1` with the `Host` header for `addr` (keep-alive is
/// HTTP/1.1's default).
pub fn request(addr: SocketAddr) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// Counts the whole responses at the front of `buf`: returns how many,
/// and how many bytes they take. Each must be `HTTP/1.1 200` with a
/// `Content-Length` and the body [`HELLO`]; chunked framing, another
/// status or body, or a head over 8 KiB is an error.
pub fn complete_responses(buf: &[u8]) -> Result<(u64, usize), String> {
    let mut at = 0;
    let mut done = 0;
    while at < buf.len() {
        let Some(head_len) = find_head_end(&buf[at..]) else {
            if buf.len() - at > MAX_HEAD {
                return Err(format!("a response head longer than {MAX_HEAD} bytes"));
            }
            break;
        };
        let head = &buf[at..at + head_len];
        let body_len = body_length(head)?;
        let end = at + head_len + 4 + body_len;
        if buf.len() < end {
            break;
        }
        let body = &buf[end - body_len..end];
        if body != HELLO {
            return Err(format!(
                "body {:?}, expected {:?}",
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(HELLO)
            ));
        }
        done += 1;
        at = end;
    }
    Ok((done, at))
}

/// Where the blank line that ends a head starts, if it is in `buf`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The body length a response head (without its blank line) announces,
/// after checking its status line.
fn body_length(head: &[u8]) -> Result<usize, String> {
    let mut lines = head.split(|&b| b == b'\n');
    let status = lines.next().unwrap_or_default();
    if !status.starts_with(b"HTTP/1.1 200 ") {
        return Err(format!(
            "status line {:?}, expected HTTP/1.1 200",
            String::from_utf8_lossy(status.trim_ascii())
        ));
    }
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            return std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("bad Content-Length {:?}", String::from_utf8_lossy(value)));
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err("a chunked response; the benchmark expects Content-Length".into());
        }
    }
    Err("a response without Content-Length".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nHello, World!";

    #[test]
    fn counts_whole_responses_and_keeps_the_rest() {
        let mut two = OK.to_vec();
        two.extend_from_slice(OK);
        assert_eq!(complete_responses(&two), Ok((2, two.len())));
        for cut in 0..OK.len() {
            let mut partial = OK.to_vec();
            partial.extend_from_slice(&OK[..cut]);
            assert_eq!(complete_responses(&partial), Ok((1, OK.len())), "cut {cut}");
        }
        assert_eq!(
            request("127.0.0.1:80".parse().unwrap()),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"
        );
    }

    #[test]
    fn wrong_responses_are_errors() {
        let wrong = |r: &[u8]| complete_responses(r).unwrap_err();
        assert!(wrong(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").contains("404"));
        assert!(wrong(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nHello").contains("body"));
        assert!(
            wrong(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").contains("chunked")
        );
        assert!(wrong(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n").contains("Content-Length"));
        assert!(wrong(&[b'x'; MAX_HEAD + 1]).contains("longer"));
    }
}
