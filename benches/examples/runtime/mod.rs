//! The tokio runtime the baseline servers' command line names, shared by
//! the examples that take one (`tokio_echo`, `tokio_spreader`).
//!
//! It lives beside the examples rather than in the `twill_bench` library
//! because tokio is a dev-dependency: the library stays plain `std`.

use std::io;

use tokio::runtime::{Builder, Runtime};

/// Builds the runtime `[current_thread|multi_thread [WORKERS]]` names,
/// taking those words from `args`: tokio's current-thread runtime (the
/// default), or its work-stealing one with `WORKERS` worker threads, by
/// default one per core. All drivers are enabled.
pub fn from_args(args: &mut impl Iterator<Item = String>) -> io::Result<Runtime> {
    let mut runtime = match args.next().as_deref() {
        None | Some("current_thread") => Builder::new_current_thread(),
        Some("multi_thread") => {
            let mut builder = Builder::new_multi_thread();
            // A worker count to match another server's threads; tokio's
            // default is one per core.
            if let Some(workers) = args.next() {
                let workers = workers.parse().map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("WORKERS {workers:?}: {e}"),
                    )
                })?;
                builder.worker_threads(workers);
            }
            builder
        }
        Some(other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown runtime {other:?}: current_thread or multi_thread"),
            ))
        }
    };
    runtime.enable_all().build()
}
