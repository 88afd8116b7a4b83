//! A client of `broadcast_server`: prints what it receives and says hello
//! every few seconds, on a reactor timer (no thread).
//!
//! ```text
//! cargo run --example broadcast_client [ENDPOINT] [NAME] [INTERVAL_SECS]
//! # defaults: 127.0.0.1:8007, the process id, 5
//! cargo run --example broadcast_client -- unix:/tmp/broadcast.sock
//! ```
//!
//! `ENDPOINT` is an address (`127.0.0.1:8007`) or an endpoint string
//! (`tcp:host=127.0.0.1:port=8007:timeout=5`, `unix:/tmp/broadcast.sock`),
//! connected to with [`Reactor::client_from_string`].

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use twill::net::endpoint::parse_client_or_addr;
use twill::{
    Bytes, ClientFactory, Connector, DelayedCall, Factory, Protocol, Reactor, Reason, Transport,
};

struct Greeter {
    name: String,
    interval: Duration,
    timer: Option<DelayedCall>,
}

impl Greeter {
    /// Says hello now and schedules the next hello, on a fixed interval.
    fn say_hello(transport: Transport, name: String, interval: Duration) -> DelayedCall {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        transport.write(format!("hello, I'm {name} {}\n", now.as_secs()));
        twill::call_later(interval, move || {
            if !transport.is_closing() {
                Greeter::say_hello(transport, name, interval);
            }
        })
    }
}

impl Protocol for Greeter {
    fn connection_made(&mut self, transport: &Transport) {
        println!("Connected.");
        let first = Greeter::say_hello(transport.clone(), self.name.clone(), self.interval);
        self.timer = Some(first);
    }

    fn data_received(&mut self, data: Bytes) {
        print!("{}", String::from_utf8_lossy(&data));
    }

    fn connection_lost(&mut self, _reason: &Reason) {
        if let Some(timer) = self.timer.take() {
            let _ = timer.cancel();
        }
    }
}

struct GreeterFactory {
    name: String,
    interval: Duration,
}

impl Factory for GreeterFactory {
    type Protocol = Greeter;

    fn build_protocol(&mut self, _peer: twill::Address) -> Option<Greeter> {
        Some(Greeter {
            name: self.name.clone(),
            interval: self.interval,
            timer: None,
        })
    }
}

impl ClientFactory for GreeterFactory {
    fn started_connecting(&mut self, _connector: &Connector) {
        println!("Started to connect.");
    }

    fn client_connection_failed(&mut self, _connector: &Connector, reason: &io::Error) {
        println!("Connection failed. Reason: {reason}");
        twill::stop();
    }

    fn client_connection_lost(&mut self, _connector: &Connector, reason: &Reason) {
        println!("Lost connection. Reason: {reason}");
        twill::stop();
    }
}

const USAGE: &str = "usage: broadcast_client [ENDPOINT] [NAME] [INTERVAL_SECS]   (ENDPOINT: \
                     an address (127.0.0.1:8007, the default) or an endpoint string \
                     (tcp:host=127.0.0.1:port=8007, unix:/tmp/broadcast.sock))";

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:8007".into());
    if let Err(err) = parse_client_or_addr(&endpoint) {
        eprintln!("broadcast_client: {err}\n{USAGE}");
        std::process::exit(2);
    }
    let name = args
        .next()
        .unwrap_or_else(|| std::process::id().to_string());
    let interval = args
        .next()
        .map(|s| {
            s.parse::<f64>()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        })
        .transpose()?
        .unwrap_or(5.0);
    let reactor = Reactor::new()?;
    reactor.client_from_string(
        &endpoint,
        GreeterFactory {
            name,
            interval: Duration::from_secs_f64(interval),
        },
    )?;
    reactor.run()
}
