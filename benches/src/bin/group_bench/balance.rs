//! The balance part: where a group's placements put connections.
//!
//! Each case starts `echo_server ADDR N --placement P`, opens its
//! connections one after the other from this process (each echoing one
//! 16-byte message, checked, so the connection has been placed and
//! served before the next one opens), then stops the server with SIGTERM
//! while they are open and reads the lines it logs as it stops,
//! `worker I: N connections, M open at stop`. The figure compared is
//! `open at stop`: the connections each worker held at once. With every
//! connection kept open that is also what it was given; in the churn case
//! every other connection closes after its echo (and the server has
//! closed its side before the next opens), so a placement that ignores
//! how long connections live can pile the long ones on one worker.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use twill_bench::median;
use twill_bench::rotation::{successes, Rotation, Samples};
use twill_bench::server::{RunningServer, ServerSpec};

use super::Opts;

const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to stop and report after SIGTERM: its
/// graceful stop closes every connection after its writes.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one echo may take before the case fails.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One case: how many connections, and whether they churn.
struct Case {
    label: String,
    conns: usize,
    churn: bool,
}

/// What a stopped server said about each worker, in worker order.
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    /// Connections each worker was given over the run.
    pub given: Vec<usize>,
    /// Connections each worker held when the stop began.
    pub open: Vec<usize>,
}

/// Runs every case for every placement, `o.rounds` times in rotation, and
/// prints a table per case.
pub fn run(o: &Opts, rotation: &mut Rotation) {
    let program = o.target_dir.join("examples/echo_server");
    let n = o.workers.to_string();
    let placements: Vec<ServerSpec> = ["round-robin", "least", "reuse-port"]
        .iter()
        .map(|p| ServerSpec::new(p, &program, &[&n, "--placement", p]))
        .collect();
    let mut cases: Vec<Case> = o
        .conns
        .iter()
        .map(|&conns| Case {
            label: format!("{conns} conns"),
            conns,
            churn: false,
        })
        .collect();
    if o.churn > 0 {
        cases.push(Case {
            label: format!("churn {}", o.churn),
            conns: o.churn,
            churn: true,
        });
    }
    println!("\n## balance: {} workers\n", o.workers);
    for case in &cases {
        let samples = rotation.rounds(&case.label, o.rounds, &placements, |round, spec| {
            let counts = run_case(o, spec, case)?;
            println!(
                "round {}/{} {:<11} {:<12} given {:?}, open at stop {:?}",
                round + 1,
                o.rounds,
                case.label,
                spec.name,
                counts.given,
                counts.open
            );
            Ok(counts)
        });
        print_table(o, case, &placements, &samples);
    }
}

/// Starts the server, loads it as `case` says, stops it and reads its
/// per-worker counts.
fn run_case(o: &Opts, spec: &ServerSpec, case: &Case) -> Result<Counts, String> {
    let mut server = RunningServer::start(spec, READY_TIMEOUT)?;
    let mut kept = Vec::with_capacity(case.conns);
    for i in 0..case.conns {
        let stream = connect_and_echo(server.addr, i)?;
        if case.churn && i % 2 == 1 {
            close_and_wait(stream, i)?;
        } else {
            kept.push(stream);
        }
    }
    if let Some(status) = server.exited() {
        return Err(format!("server exited during the run ({status})"));
    }
    let terminated = Command::new("kill")
        .args(["-TERM", &server.pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if !terminated.success() {
        return Err("kill -TERM failed".into());
    }
    let counts = read_counts(&server.output, o.workers)?;
    let stopped_by = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(status) = server.exited() {
            break status;
        }
        if Instant::now() >= stopped_by {
            return Err(format!(
                "server did not exit within {STOP_TIMEOUT:?} of SIGTERM"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        return Err(format!("server exited with {status} after SIGTERM"));
    }
    drop(kept);
    let total: usize = counts.given.iter().sum();
    if total != case.conns {
        return Err(format!(
            "the workers were given {total} connections, not {}",
            case.conns
        ));
    }
    Ok(counts)
}

/// Opens connection `i` and checks that a 16-byte message comes back.
fn connect_and_echo(addr: SocketAddr, i: usize) -> Result<TcpStream, String> {
    let fail = |e: std::io::Error| format!("connection {i}: {e}");
    let mut stream = TcpStream::connect(addr).map_err(fail)?;
    stream.set_nodelay(true).map_err(fail)?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(fail)?;
    let message = format!("conn {i:>10}\n");
    stream.write_all(message.as_bytes()).map_err(fail)?;
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).map_err(fail)?;
    if echoed != message.as_bytes() {
        return Err(format!(
            "VERIFY ERROR: connection {i} got {:?} back for {message:?}",
            String::from_utf8_lossy(&echoed)
        ));
    }
    Ok(stream)
}

/// Closes a connection's sending side and waits for the server to close
/// its own, so the server has counted it closed before the next opens.
fn close_and_wait(mut stream: TcpStream, i: usize) -> Result<(), String> {
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("connection {i}: {e}"))?;
    let mut rest = [0u8; 64];
    match stream.read(&mut rest) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!(
            "connection {i}: {n} unexpected bytes before the close"
        )),
        Err(e) => Err(format!("connection {i}: the server did not close: {e}")),
    }
}

/// Reads the server's output until it has reported every worker.
fn read_counts(output: &mpsc::Receiver<String>, workers: usize) -> Result<Counts, String> {
    let mut given = vec![None; workers];
    let mut open = vec![0; workers];
    let deadline = Instant::now() + STOP_TIMEOUT;
    while given.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = output.recv_timeout(left).map_err(|_| {
            format!("the server did not report every worker's count within {STOP_TIMEOUT:?}")
        })?;
        if let Some((index, g, m)) = parse_worker_line(&line) {
            if index >= workers {
                return Err(format!("the server reported worker {index} of {workers}"));
            }
            given[index] = Some(g);
            open[index] = m;
        }
    }
    Ok(Counts {
        given: given.into_iter().map(Option::unwrap_or_default).collect(),
        open,
    })
}

/// Parses `worker I: N connections, M open at stop`, after any log prefix.
pub fn parse_worker_line(line: &str) -> Option<(usize, usize, usize)> {
    let (_, rest) = line.split_once("worker ")?;
    let (index, rest) = rest.split_once(": ")?;
    let (given, rest) = rest.split_once(" connections, ")?;
    let (open, _) = rest.split_once(" open at stop")?;
    Some((index.parse().ok()?, given.parse().ok()?, open.parse().ok()?))
}

/// The spread of one round: the fewest and the most connections a worker
/// held.
fn min_max(c: &Counts) -> (usize, usize) {
    let min = c.open.iter().copied().min().unwrap_or(0);
    let max = c.open.iter().copied().max().unwrap_or(0);
    (min, max)
}

fn print_table(o: &Opts, case: &Case, placements: &[ServerSpec], samples: &Samples<Counts>) {
    let held = if case.churn {
        case.conns.div_ceil(2)
    } else {
        case.conns
    };
    let mean = held as f64 / o.workers as f64;
    // The most a worker holds when the spread is as even as whole
    // connections allow.
    let even = held.div_ceil(o.workers).max(1);
    let what = if case.churn {
        format!(
            "churn: {} connections, a long-lived one and one closed after its echo in turn",
            case.conns
        )
    } else {
        format!("{} connections, all kept open", case.conns)
    };
    println!(
        "\n{what} over {} workers ({held} held at the end, {mean:.1} per worker if even); \
         {} round(s): open at stop per worker in the round with the widest spread, \
         min / max, spread (max − min) as the median and the widest over rounds, \
         max over the most an even spread puts on a worker ({even})\n",
        o.workers, o.rounds
    );
    println!("| placement | open at stop per worker (widest round) | min | max | spread, median | spread, widest | max / even |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for spec in placements {
        let ok = successes(samples, &spec.name);
        let Some(widest) = ok.iter().max_by_key(|c| {
            let (min, max) = min_max(c);
            max - min
        }) else {
            println!("| {} | failed | | | | | |", spec.name);
            continue;
        };
        let (min, max) = min_max(widest);
        let spreads: Vec<f64> = ok
            .iter()
            .map(|c| {
                let (min, max) = min_max(c);
                (max - min) as f64
            })
            .collect();
        let per_worker: Vec<String> = widest.open.iter().map(usize::to_string).collect();
        println!(
            "| {} | {} | {min} | {max} | {} | {} | {:.2}× |",
            spec.name,
            per_worker.join(" / "),
            median(&spreads),
            max - min,
            max as f64 / even as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lines() {
        let line =
            "[2026-12-03T10:00:00Z INFO  echo_server] worker 1: 32 connections, 30 open at stop";
        assert_eq!(parse_worker_line(line), Some((1, 32, 30)));
        assert_eq!(parse_worker_line("listening on 127.0.0.1:5"), None);
        assert_eq!(
            parse_worker_line("worker 0 stopped; stopping the group"),
            None
        );
    }
}
