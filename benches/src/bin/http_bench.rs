//! `http_bench`: hello-world HTTP/1.1 servers side by side under
//! `http_loadgen`, requests per server CPU-second.
//!
//! ```text
//! http_bench [--depths 1,16] [--conns 64] [--rounds 3] [--duration 5]
//!            [--warmup 1] [--threads 1] [--servers LIST] [--target-dir DIR]
//!            [--smoke]
//! ```
//!
//! Servers ([`twill_bench::server::http_servers`]): twill's
//! `twill_http_hello` (`twill_protocols::http::HttpServer`), hyper 1.x on
//! tokio's current-thread runtime (`hyper_hello`), Twisted Web and aiohttp
//! (on asyncio's loop, and on uvloop as `aiohttp_uvloop`) from the suite's
//! virtualenv (`$TWILL_BENCH_PYTHON`; without it they are skipped with a
//! warning). Each answers `GET /` with `200 OK` and the 13-byte body
//! `Hello, World!` with a `Content-Length`.
//!
//! The load: `--conns` keep-alive connections, each with `--depths`
//! requests in flight: at depth 1 one request at a time, at depth 16
//! sixteen pipelined. `http_loadgen` parses every response (status 200,
//! `Content-Length`, the body) and counts the whole ones. The method and
//! the tables are [`twill_bench::request`]'s: requests/s, latency, server
//! CPU and requests per server CPU-second, with twill's ratio to every
//! other server in both requests per CPU-second and requests/s.
//!
//! `--smoke` is one round at each depth, 0.5 s after 0.2 s of warm-up,
//! and fails if twill's server is not built. A failed run (a wrong
//! response, a crash, a timeout) makes the exit status non-zero.

use std::process::exit;

use twill_bench::request::{RequestBench, RequestOpts};
use twill_bench::server::http_servers;
use twill_bench::{parsed_or_exit, Args, CliError};

const USAGE: &str = "usage: http_bench [--depths 1,16] [--conns 64] [--rounds 3] \
[--duration 5] [--warmup 1] [--threads 1] [--servers NAME|NAME=PATH,..] [--target-dir DIR] \
[--smoke]
servers: twill hyper twisted_web aiohttp aiohttp_uvloop (default: all found)";

fn parse() -> Result<RequestOpts, CliError> {
    let mut a = Args::from_env_or_usage(USAGE);
    let opts = RequestOpts::parse("http_bench", &mut a, http_servers)?;
    a.finish()?;
    Ok(opts)
}

fn main() {
    let opts = parsed_or_exit("http_bench", parse());
    let bench = RequestBench {
        program: "http_bench",
        title: "twill HTTP benchmark",
        load: "HTTP/1.1 `GET /` answered `Hello, World!`, keep-alive",
        unit: "req",
        loader_args: &[],
    };
    exit(bench.run(&opts));
}
