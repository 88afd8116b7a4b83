//! The `deferred` example (the seed article's Deferred demo), run as a child
//! process: both paths print exactly the expected lines on stdout, about
//! two seconds after start, and the reactor stops itself (exit status 0).
//!
//! The examples are built once with `cargo build -p twill --examples` (by
//! `twill_test_support::process`). Every wait is bounded; a child still
//! running when a test ends is killed.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use twill_test_support::process::Proc;

/// How long the example may take (it fires after 2 s).
const WAIT: Duration = Duration::from_secs(15);

/// What a finished run produced.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs the `deferred` example with `args` to completion, within `WAIT`.
fn run_deferred(args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Proc::example("twill", "deferred", args).wait_limit(WAIT);
    let status = child.wait_exit();
    let elapsed = started.elapsed();
    Run {
        status,
        stdout: child.stdout_text(),
        stderr: child.stderr_text(),
        elapsed,
    }
}

fn stdout_lines(run: &Run) -> Vec<&str> {
    run.stdout.lines().collect()
}

#[test]
fn without_arguments_both_callbacks_print_and_the_reactor_stops() {
    let run = run_deferred(&[]);
    assert!(
        run.status.success(),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert_eq!(
        stdout_lines(&run),
        ["Square of 5 is 25", "Twice of 5 is 10"],
        "stderr:\n{}",
        run.stderr
    );
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "the chain fires after call_later(2 s), not after {:?}",
        run.elapsed
    );
    assert!(!run.stderr.contains("Unhandled error"), "{}", run.stderr);
}

#[test]
fn call_error_takes_the_errback_path_only() {
    let run = run_deferred(&["call_error"]);
    assert!(
        run.status.success(),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert_eq!(
        stdout_lines(&run),
        ["Error with process: call_error asked for the errback path"],
        "stderr:\n{}",
        run.stderr
    );
    assert!(!run.stdout.contains("Square of"));
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "the chain fires after call_later(2 s), not after {:?}",
        run.elapsed
    );
    assert!(!run.stderr.contains("Unhandled error"), "{}", run.stderr);
}

#[test]
fn an_unknown_argument_is_refused() {
    let run = run_deferred(&["bogus"]);
    assert_eq!(run.status.code(), Some(2), "stderr:\n{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("usage: deferred [call_error]"));
}
