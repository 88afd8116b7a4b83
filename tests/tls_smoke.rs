//! Smoke: TLS echo over loopback, one reactor, both sides twill.
#![cfg(feature = "tls")]

use std::cell::RefCell;
use std::rc::Rc;

use twill::tls::{config, HandshakeCompleted, TlsConnector};
use twill::{Bytes, Event, Protocol, Reactor, Reason, Transport};
use twill_test_support::reactor::run;

struct Echo(Option<Transport>);
impl Protocol for Echo {
    fn connection_made(&mut self, t: &Transport) {
        self.0 = Some(t.clone());
    }
    fn data_received(&mut self, data: Bytes) {
        self.0.as_ref().unwrap().write(data);
    }
}

struct Client {
    t: Option<Transport>,
    got: Rc<RefCell<Vec<u8>>>,
    log: Rc<RefCell<Vec<String>>>,
}
impl Protocol for Client {
    fn connection_made(&mut self, t: &Transport) {
        self.t = Some(t.clone());
        t.write("hello");
    }
    fn data_received(&mut self, data: Bytes) {
        self.got.borrow_mut().extend_from_slice(&data);
        if self.got.borrow().len() >= 5 {
            self.t.as_ref().unwrap().lose_connection();
        }
    }
    fn event_received(&mut self, event: Event) {
        if let Some(done) = event.downcast_ref::<HandshakeCompleted>() {
            self.log
                .borrow_mut()
                .push(format!("{:?}", done.info.protocol_version));
        }
    }
    fn connection_lost(&mut self, reason: &Reason) {
        self.log.borrow_mut().push(format!("lost: {reason}"));
        twill::stop();
    }
}

#[test]
fn echo_over_tls() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let certs = config::certs_from_pem(made.cert.pem().as_bytes()).unwrap();
    let key = config::key_from_pem(made.signing_key.serialize_pem().as_bytes()).unwrap();
    let server = config::server_config(certs.clone(), key).unwrap();
    let client = config::client_config_trusting(certs).unwrap();
    let reactor = Reactor::new().unwrap();
    let port = reactor
        .listen_tls("127.0.0.1:0", server, |_| Echo(None))
        .unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::new(RefCell::new(Vec::new()));
    let (g, l) = (got.clone(), log.clone());
    reactor
        .connect_tls(
            port.host(),
            "localhost",
            TlsConnector::new(client),
            move |_| Client {
                t: None,
                got: g.clone(),
                log: l.clone(),
            },
        )
        .unwrap();
    run(&reactor);
    assert_eq!(&got.borrow()[..], b"hello");
    assert_eq!(
        *log.borrow(),
        vec![
            "Some(TLSv1_3)".to_string(),
            "lost: connection was closed cleanly".into()
        ]
    );
}
