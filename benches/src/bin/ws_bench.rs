//! `ws_bench`: WebSocket echo servers side by side under `http_loadgen
//! --ws`, messages per server CPU-second.
//!
//! ```text
//! ws_bench [--size 64] [--depths 1,16] [--conns 64] [--rounds 3]
//!          [--duration 5] [--warmup 1] [--threads 1] [--servers LIST]
//!          [--target-dir DIR] [--smoke]
//! ```
//!
//! Servers ([`twill_bench::server::ws_servers`]): twill's `twill_ws_echo`
//! on its WebSocket API (`twill`) and on the codec layer by hand
//! (`twill_session`), and tokio-tungstenite on tokio's current-thread
//! runtime (`tungstenite_echo`, with its defaults and with a 4 KiB read
//! buffer). Each opens a WebSocket on `GET /` and sends every message
//! back.
//!
//! The load: `--conns` connections, each opened with the HTTP/1.1 upgrade
//! and then kept at `--depths` binary messages of `--size` bytes in flight
//! (masked, as a client's must be). `http_loadgen` compares every echoed
//! frame byte for byte with what it sent. The method and the tables are
//! [`twill_bench::request`]'s: messages/s, latency, server CPU and
//! messages per server CPU-second, with twill's ratio to the other server
//! in both messages per CPU-second and messages/s.
//!
//! `--smoke` is one round at each depth, 0.5 s after 0.2 s of warm-up,
//! and fails if twill's server is not built. A failed run (a wrong echo, a
//! crash, a timeout) makes the exit status non-zero.

use std::process::exit;

use twill_bench::request::{RequestBench, RequestOpts};
use twill_bench::server::ws_servers;
use twill_bench::{cli_err, parsed_or_exit, Args, CliError};

const USAGE: &str = "usage: ws_bench [--size 64] [--depths 1,16] [--conns 64] [--rounds 3] \
[--duration 5] [--warmup 1] [--threads 1] [--servers NAME|NAME=PATH,..] [--target-dir DIR] \
[--smoke]
servers: twill twill_session tungstenite tungstenite_4k (default: all found)";

/// The largest message: one frame with a 16-bit length, as `http_loadgen`
/// sends.
const MAX_SIZE: usize = 65_535;

fn parse() -> Result<(RequestOpts, usize), CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let size = a.parse_or("--size", 64usize)?;
    if !(1..=MAX_SIZE).contains(&size) {
        return Err(cli_err!("--size must be 1 to {MAX_SIZE} bytes"));
    }
    let opts = RequestOpts::parse("ws_bench", &mut a, ws_servers)?;
    a.finish()?;
    Ok((opts, size))
}

fn main() {
    let (opts, size) = parsed_or_exit("ws_bench", parse());
    let size_arg = size.to_string();
    let load = format!("WebSocket echo of {size} B binary messages");
    let bench = RequestBench {
        program: "ws_bench",
        title: "twill WebSocket benchmark",
        load: &load,
        unit: "msg",
        loader_args: &["--ws", "--size", &size_arg],
    };
    exit(bench.run(&opts));
}
