//! Endpoint strings end to end: what `server_from_string` listens on and
//! `client_from_string` connects to, over TCP, Unix sockets and TLS, and
//! the errors that name the field at fault.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use twill::{Address, Bytes, ClientFactory, Connector, Factory, Protocol, Reactor, Transport};
use twill_test_support::reactor::run;

/// Says what its peer is, then echoes.
struct Echo(Option<Transport>);

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(format!("you are {}\n", transport.peer()));
        self.0 = Some(transport.clone());
    }

    fn data_received(&mut self, data: Bytes) {
        self.0.as_ref().unwrap().write(data);
    }
}

/// Records the first thing the server says, then stops the reactor.
struct Listen {
    heard: Rc<RefCell<Vec<String>>>,
}

struct Listener {
    heard: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Listener {
    fn data_received(&mut self, data: Bytes) {
        self.heard
            .borrow_mut()
            .push(String::from_utf8_lossy(&data).into_owned());
        twill::stop();
    }
}

impl Factory for Listen {
    type Protocol = Listener;

    fn build_protocol(&mut self, _peer: Address) -> Option<Listener> {
        Some(Listener {
            heard: self.heard.clone(),
        })
    }
}

impl ClientFactory for Listen {
    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        self.heard.borrow_mut().push(format!("failed: {reason}"));
        twill::stop();
    }
}

fn listen(heard: &Rc<RefCell<Vec<String>>>) -> Listen {
    Listen {
        heard: heard.clone(),
    }
}

#[test]
fn a_tcp_string_listens_where_it_says_and_a_client_string_binds_where_it_says() {
    let reactor = Reactor::new().unwrap();
    let port = reactor
        .server_from_string("tcp:0:interface=127.0.0.1:backlog=16", |_peer| Echo(None))
        .unwrap();
    let at = port.host().port().unwrap();
    assert_eq!(port.host().ip(), Some([127, 0, 0, 1].into()));
    let heard = Rc::new(RefCell::new(Vec::new()));
    reactor
        .client_from_string(
            &format!("tcp:host=127.0.0.1:port={at}:timeout=5:bindAddress=127.0.0.7"),
            listen(&heard),
        )
        .unwrap();
    run(&reactor);
    let heard = heard.borrow();
    assert_eq!(heard.len(), 1);
    assert!(heard[0].starts_with("you are 127.0.0.7:"), "{heard:?}");
}

#[test]
fn a_plain_address_is_taken_where_an_endpoint_string_is() {
    let reactor = Reactor::new().unwrap();
    let port = reactor
        .server_from_string("127.0.0.1:0", |_peer| Echo(None))
        .unwrap();
    let heard = Rc::new(RefCell::new(Vec::new()));
    reactor
        .client_from_string(
            &format!("localhost:{}", port.host().port().unwrap()),
            listen(&heard),
        )
        .unwrap();
    run(&reactor);
    assert!(heard.borrow()[0].starts_with("you are 127.0.0.1:"));
}

#[test]
fn a_bad_string_is_an_invalid_input_error_that_names_its_field() {
    let reactor = Reactor::new().unwrap();
    let heard = Rc::new(RefCell::new(Vec::new()));
    for (server, field) in [
        ("tcp:80x", "field port"),
        ("tcp:8007:backlog=many", "field backlog"),
        ("tcp:8007:colour=blue", "unknown field \"colour\""),
        ("unix:/tmp/x.sock:mode=999", "field mode"),
        ("carrier-pigeon:8007", "unknown endpoint type"),
        ("", "empty endpoint string"),
    ] {
        let err = reactor
            .server_from_string(server, |_peer| Echo(None))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{server}");
        assert!(err.to_string().contains(field), "{server}: {err}");
    }
    for (client, field) in [
        ("tcp:example.org", "missing field port"),
        ("tcp:example.org:80:timeout=soon", "field timeout"),
        (
            "tcp:example.org:80:bindAddress=nowhere",
            "field bindAddress",
        ),
        ("unix:path=", "path"),
    ] {
        let err = reactor
            .client_from_string(client, listen(&heard))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{client}");
        assert!(err.to_string().contains(field), "{client}: {err}");
    }
    assert!(heard.borrow().is_empty(), "no attempt was made");
}

#[cfg(feature = "tls")]
#[test]
fn tls_strings_read_their_pem_files_and_talk_tls() {
    let dir = std::env::temp_dir().join(format!("twill-endpoints-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();

    let reactor = Reactor::new().unwrap();
    let port = reactor
        .server_from_string(
            &format!(
                "tls:0:interface=127.0.0.1:privateKey={}:certKey={}",
                key.display(),
                cert.display()
            ),
            |_peer| Echo(None),
        )
        .unwrap();
    let heard = Rc::new(RefCell::new(Vec::new()));
    reactor
        .client_from_string(
            &format!(
                "tls:localhost:{}:trustRoots={}",
                port.host().port().unwrap(),
                cert.display()
            ),
            listen(&heard),
        )
        .unwrap();
    run(&reactor);
    assert!(
        heard.borrow()[0].starts_with("you are 127.0.0.1:"),
        "{heard:?}"
    );

    let missing = reactor
        .server_from_string("tls:0:privateKey=/nonexistent/key.pem", |_peer| Echo(None))
        .unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound, "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
