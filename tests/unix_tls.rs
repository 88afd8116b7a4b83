//! TLS over a Unix domain socket: the layer does not care what carries it.
#![cfg(feature = "tls")]

mod tls_support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use tls_support::{handshake, Pki};
use twill::net::DEFAULT_UNIX_MODE;
use twill::tls::{StartTls, TlsAcceptor, TlsFactory};
use twill::{Bytes, Protocol, Reactor, Transport};
use twill_test_support::reactor::{run, LIMIT};

struct Echo(Option<Transport>);

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.0 = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        self.0.as_ref().unwrap().write(data);
    }
}

#[test]
fn a_rustls_client_talks_tls_to_a_twill_server_on_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("twill-unix-tls-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tls.sock");
    let pki = Pki::new("unix tls test");
    let acceptor = TlsAcceptor::new(pki.server_config());
    let reactor = Reactor::new().unwrap();
    reactor
        .listen_unix(
            &path,
            DEFAULT_UNIX_MODE,
            TlsFactory::new(StartTls::Server(acceptor), |_peer| Echo(None)),
        )
        .unwrap();
    let client_config = pki.client_config();
    let handle = reactor.handle();
    let client_path = path.clone();
    let client = thread::spawn(move || {
        let socket = UnixStream::connect(&client_path).unwrap();
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        socket.set_write_timeout(Some(LIMIT)).unwrap();
        let mut tls = handshake(socket, &client_config);
        tls.write_all(b"secret over unix").unwrap();
        let mut back = [0; 16];
        tls.read_exact(&mut back).unwrap();
        handle.stop();
        back
    });
    run(&reactor);
    assert_eq!(&client.join().unwrap(), b"secret over unix");
    fs::remove_dir_all(&dir).unwrap();
}
