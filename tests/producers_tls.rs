//! `FileSender` through the TLS layer: the producer is driven by the
//! connection below it, and what arrives decrypted is the file.
#![cfg(feature = "tls")]

mod tls_support;

use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use tls_support::{tls_connect, Pki};
use twill::defer::Failure;
use twill::producers::FileSender;
use twill::transport::DEFAULT_HIGH_WATERMARK;
use twill::{Bytes, Protocol, Reactor, Transport};
use twill_test_support::files::TempDir;
use twill_test_support::reactor::run;

fn pattern(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

struct FileServer {
    path: std::path::PathBuf,
    outcome: Rc<std::cell::RefCell<Option<Result<u64, String>>>>,
    peak: Rc<std::cell::Cell<usize>>,
}

impl Protocol for FileServer {
    fn connection_made(&mut self, transport: &Transport) {
        let file = std::fs::File::open(&self.path).unwrap();
        let (outcome, closer) = (self.outcome.clone(), transport.clone());
        let (peak, watched) = (self.peak.clone(), transport.clone());
        let reader = WatchedRead(file, move || {
            peak.set(peak.get().max(watched.write_buffer_size()));
        });
        FileSender::begin_file_transfer(reader, transport).add_both(
            move |result: Result<u64, Failure>| {
                *outcome.borrow_mut() =
                    Some(result.as_ref().map(|n| *n).map_err(|f| f.to_string()));
                closer.lose_connection();
                result
            },
        );
    }
    fn data_received(&mut self, _: Bytes) {}
}

/// Calls its closure before each read.
struct WatchedRead<F>(std::fs::File, F);

impl<F: FnMut()> Read for WatchedRead<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (self.1)();
        self.0.read(buf)
    }
}

#[test]
fn file_sender_under_tls() {
    let len: u64 = 8 << 20;
    let dir = TempDir::new("producers-tls");
    let data: Vec<u8> = (0..len).map(pattern).collect();
    let path = dir.write("data", &data);
    drop(data);

    let pki = Pki::new("producers");
    let client_config: Arc<_> = pki.client_config();
    let reactor = Reactor::new().unwrap();
    let outcome = Rc::new(std::cell::RefCell::new(None));
    let peak = Rc::new(std::cell::Cell::new(0));
    let (o, p) = (outcome.clone(), peak.clone());
    let port = reactor
        .listen_tls("127.0.0.1:0", pki.server_config(), move |_| FileServer {
            path: path.clone(),
            outcome: o.clone(),
            peak: p.clone(),
        })
        .unwrap();
    let addr = port.host().tcp().unwrap();
    let handle = reactor.handle();
    let client = std::thread::spawn(move || {
        let mut stream = tls_connect(addr, &client_config);
        stream.flush().unwrap();
        let mut buf = vec![0; 4096];
        let mut at = 0u64;
        loop {
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            for &byte in &buf[..n] {
                assert_eq!(byte, pattern(at), "byte {at}");
                at += 1;
            }
        }
        handle.stop();
        at
    });
    run(&reactor);
    assert_eq!(client.join().unwrap(), len);
    assert_eq!(*outcome.borrow(), Some(Ok(len)));
    // Ciphertext adds a little to each chunk, no more.
    let peak = peak.get();
    assert!(
        peak <= 2 * (DEFAULT_HIGH_WATERMARK + FileSender::CHUNK_SIZE),
        "write buffer reached {peak}"
    );
}
