//! What every report shares: its header, the per-round line's CPU figures
//! and number formatting.

use std::fmt;
use std::process::Command;

use crate::measure::CpuWindow;

/// The trimmed standard output of a command, if it ran and printed
/// something.
pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Prints a report's title and the lines that say when, where and how it
/// ran: the date, the core count with the CPU model and kernel, and
/// `command` (what to type to run it again).
pub fn print_run_header(title: &str, command: &str) {
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = command_output("uname", &["-sr"]).unwrap_or_default();
    println!("# {title}");
    println!();
    println!("- date: {date}");
    println!("- nproc: {nproc} ({cpu}; {kernel})");
    println!("- command: {command}");
}

/// `program` followed by this process's arguments: the command line of the
/// run, for its header.
pub fn this_command(program: &str) -> String {
    std::iter::once(program.to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints one run's line of a round,
/// `round I/N HEAD | CPU %: server S, loader L, ksoftirqd K, other O, steal T`,
/// flagged `  [interference]` where other load and steal took a sizeable
/// share ([`CpuWindow::interference`]). `round` counts from 0; `head` is
/// what the benchmark says of the run (the server, its figures);
/// `duration` is the measured window in seconds.
pub fn print_round(
    round: usize,
    rounds: usize,
    head: fmt::Arguments<'_>,
    cpu: &CpuWindow,
    duration: f64,
) {
    println!(
        "round {}/{} {head} | CPU %: server {:.0}, loader {:.0}, ksoftirqd {:.0}, other {:.0}, \
         steal {:.0}{}",
        round + 1,
        rounds,
        cpu.server_cpu_s / duration * 100.0,
        cpu.loader_pct,
        cpu.ksoftirqd_pct,
        cpu.other_pct,
        cpu.steal_pct,
        if cpu.interference() {
            "  [interference]"
        } else {
            ""
        }
    );
}

/// A figure with `decimals` decimals, or `n/a`.
pub fn fmt(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "n/a".into()
    }
}

/// A ratio as `1.23×`, or `n/a`.
pub fn fmt_ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}×")
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt(1.234, 1), "1.2");
        assert_eq!(fmt(f64::NAN, 1), "n/a");
        assert_eq!(fmt_ratio(0.5), "0.50×");
        assert_eq!(fmt_ratio(f64::INFINITY), "n/a");
        assert!(this_command("x").starts_with("x"));
    }
}
