//! `twill_file_server`: sends a file to every client, then closes; the
//! twill servers of `sendfile_bench`.
//!
//! ```text
//! twill_file_server ADDR FILE sendfile|copy
//! ```
//!
//! `sendfile` sends the whole file with `Transport::send_file` (the
//! kernel's `sendfile(2)` on Linux); `copy` with
//! `producers::FileSender`, which reads it 64 KiB at a time into the
//! write buffer while the transport is writable. Either closes the
//! connection once the file is sent. When listening it prints
//! `listening on ADDR` to stderr. It runs until killed.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use twill::producers::FileSender;
use twill::{Bytes, Protocol, Reactor, Transport};

/// How a file is sent.
#[derive(Clone, Copy)]
enum Mode {
    SendFile,
    Copy,
}

/// Sends the file on connect, then closes.
struct SendOnConnect {
    path: Rc<PathBuf>,
    mode: Mode,
}

impl Protocol for SendOnConnect {
    fn connection_made(&mut self, transport: &Transport) {
        let file = match File::open(&*self.path) {
            Ok(file) => file,
            Err(err) => {
                eprintln!("cannot open {}: {err}", self.path.display());
                transport.abort_connection();
                return;
            }
        };
        let closer = transport.clone();
        let sent = match self.mode {
            Mode::SendFile => {
                let len = file.metadata().map_or(0, |m| m.len());
                transport.send_file(file, 0..len)
            }
            Mode::Copy => FileSender::begin_file_transfer(file, transport),
        };
        sent.add_both(move |result| {
            match &result {
                Ok(_) => closer.lose_connection(),
                Err(failure) => {
                    eprintln!("sending the file failed: {failure}");
                    closer.abort_connection();
                }
            }
            result
        });
    }

    fn data_received(&mut self, _: Bytes) {}
}

fn main() -> io::Result<()> {
    let usage = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: twill_file_server ADDR FILE sendfile|copy",
        )
    };
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(path), Some(mode)) = (args.next(), args.next(), args.next()) else {
        return Err(usage());
    };
    let mode = match mode.as_str() {
        "sendfile" => Mode::SendFile,
        "copy" => Mode::Copy,
        _ => return Err(usage()),
    };
    let path = Rc::new(PathBuf::from(path));
    let reactor = Reactor::new()?;
    let port = reactor.listen_tcp(addr.as_str(), move |_peer| SendOnConnect {
        path: path.clone(),
        mode,
    })?;
    eprintln!("listening on {}", port.host());
    reactor.run()
}
