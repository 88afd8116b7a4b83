//! The seed article's Deferred demo: a chain of callbacks that a timer fires
//! two seconds after the reactor starts.
//!
//! ```text
//! cargo run --example deferred              # the callback path
//! cargo run --example deferred call_error   # the errback path
//! ```
//!
//! Without arguments the Deferred is fired with 5 and both callbacks print:
//!
//! ```text
//! Square of 5 is 25
//! Twice of 5 is 10
//! ```
//!
//! With `call_error` it is errbacked instead: the callbacks are skipped and
//! only the error handler prints. Either way the reactor then stops itself.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use twill::defer::{Deferred, Failure, Resolver};
use twill::Reactor;

fn print_square(n: i64) -> Result<i64, Failure> {
    println!("Square of {n} is {}", n * n);
    Ok(n)
}

fn print_twice(n: i64) -> Result<i64, Failure> {
    println!("Twice of {n} is {}", 2 * n);
    Ok(n)
}

/// Reports the failure and passes it on, so the callbacks after it are
/// skipped too.
fn on_error(failure: Failure) -> Result<i64, Failure> {
    println!("Error with process: {failure}");
    Err(failure)
}

/// The chain: `print_square`, `on_error`, `print_twice`, then stop the
/// reactor whatever the outcome. Returns the chain's last handle and the
/// resolver that fires it.
fn make_deferred() -> (Deferred<()>, Resolver<i64>) {
    let d = Deferred::new();
    let resolver = d.resolver();
    d.add_callback(print_square)
        .add_errback(on_error)
        .add_callback(print_twice);
    // The last step ends the chain: the outcome was reported above, so
    // nothing is left unhandled.
    let done = d.then_both(|_outcome: Result<i64, Failure>| {
        twill::stop();
        Ok(())
    });
    (done, resolver)
}

fn main() -> io::Result<ExitCode> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let call_error = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("call_error") => true,
        Some(other) => {
            eprintln!("unknown argument {other:?}; usage: deferred [call_error]");
            return Ok(ExitCode::from(2));
        }
    };

    let reactor = Reactor::new()?;
    let (_done, fire) = make_deferred();
    twill::call_later(Duration::from_secs(2), move || {
        if call_error {
            fire.errback(Failure::new("call_error asked for the errback path"));
        } else {
            fire.callback(5);
        }
    });
    reactor.run()?;
    Ok(ExitCode::SUCCESS)
}
