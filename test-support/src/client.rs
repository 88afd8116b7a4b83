//! A blocking TCP client for talking to a server under test (typically an
//! example run with [`crate::process::Proc`]); every read and write is
//! bounded by [`WAIT`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a connect, read or write may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a connection must stay silent to count as "sent nothing".
pub const QUIET: Duration = Duration::from_millis(150);

/// A connection with buffered reads; each method fails the test when the
/// server does not do what it expects in time.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr` with [`WAIT`] as the connect, read and write
    /// timeout, and `TCP_NODELAY` set.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// The socket (for `shutdown`, `try_clone` and the like).
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes all of `data`.
    pub fn send(&mut self, data: &[u8]) {
        self.try_send(data).expect("send");
    }

    /// Writes all of `data`, returning the error if the server may close
    /// the connection first.
    pub fn try_send(&mut self, data: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(data)
    }

    /// The next line, with its `\n`.
    pub fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) if line.ends_with(b"\n") => line,
            Ok(_) => panic!(
                "EOF instead of a line (got {:?})",
                String::from_utf8_lossy(&line)
            ),
            Err(err) => panic!(
                "no line within {WAIT:?}: {err} (got {:?})",
                String::from_utf8_lossy(&line)
            ),
        }
    }

    /// The next line as text, with its line ending.
    pub fn line_str(&mut self) -> String {
        String::from_utf8(self.line()).expect("UTF-8 line")
    }

    /// Exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut data = vec![0; n];
        self.reader
            .read_exact(&mut data)
            .unwrap_or_else(|err| panic!("could not read {n} bytes within {WAIT:?}: {err}"));
        data
    }

    /// Nothing arrives for [`QUIET`].
    pub fn expect_silence(&mut self) {
        assert!(
            self.reader.buffer().is_empty(),
            "unexpected data: {:?}",
            self.reader.buffer().escape_ascii().to_string()
        );
        self.stream().set_read_timeout(Some(QUIET)).unwrap();
        let mut byte = [0];
        let got = loop {
            // A signal (a child process ending, say) interrupts the wait;
            // that is not the server speaking.
            match self.reader.get_mut().read(&mut byte) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                got => break got,
            }
        };
        self.stream().set_read_timeout(Some(WAIT)).unwrap();
        match got {
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Ok(0) => panic!("the connection was closed"),
            Ok(_) => panic!("unexpected data: {:?}", byte.escape_ascii().to_string()),
            Err(err) => panic!("the connection failed: {err}"),
        }
    }

    /// The server closed the connection (a clean EOF, or a reset if our
    /// unread input was still in its socket), sending nothing more.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) if rest.is_empty() => {}
            Ok(_) => panic!("data before EOF: {:?}", rest.escape_ascii().to_string()),
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset && rest.is_empty() => {}
            Err(err) => panic!(
                "not closed within {WAIT:?}: {err} (after {:?})",
                rest.escape_ascii().to_string()
            ),
        }
    }

    /// The server closed the connection cleanly: EOF, with nothing unread
    /// before it and no reset.
    pub fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) if rest.is_empty() => {}
            Ok(_) => panic!("data before EOF: {:?}", rest.escape_ascii().to_string()),
            Err(err) => panic!("no clean EOF: {err} ({:?})", err.kind()),
        }
    }
}
