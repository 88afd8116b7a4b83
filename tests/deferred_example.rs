//! The `deferred` example (the seed article's Deferred demo), run as a child
//! process: both paths print exactly the expected lines on stdout, about
//! two seconds after start, and the reactor stops itself (exit status 0).
//! Also the README's Deferred snippet, compiled and run as written.
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

/// The README's Deferred snippet (the block after "Deferreds chain
/// callbacks as in Twisted"), as written there but for the name of `main`.
mod readme_snippet {
    use std::time::Duration;
    use twill::{defer::Deferred, Reactor};

    #[rustfmt::skip]
    fn readme_main() -> std::io::Result<()> {
        let reactor = Reactor::new()?;
        let d = Deferred::new();
        d.add_callback(|n: i64| { println!("Square of {n} is {}", n * n); Ok(n) })
         .add_errback(|f| { println!("Error with process: {f}"); Err(f) })
         .add_callback(|n| { println!("Twice of {n} is {}", 2 * n); twill::stop(); Ok(n) });
        twill::call_later(Duration::from_secs(2), move || d.callback(5));
        reactor.run()
    }

    #[test]
    fn the_readme_snippet_compiles_and_its_reactor_stops_itself() {
        // On a thread of its own, so that a reactor that does not stop
        // fails the test instead of hanging it.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let outcome = readme_main().map_err(|err| err.to_string());
            let _ = done.send((outcome, started.elapsed()));
        });
        let (outcome, elapsed) = finished
            .recv_timeout(super::WAIT)
            .expect("the snippet's reactor stopped itself");
        outcome.unwrap();
        assert!(
            elapsed >= Duration::from_secs(2),
            "the chain fires after call_later(2 s), not after {elapsed:?}"
        );
    }
}
