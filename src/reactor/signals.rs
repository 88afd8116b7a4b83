//! SIGINT and SIGTERM stop every running reactor gracefully.
//!
//! One helper thread waits for the signals (with `async-signal`, whose
//! handler only writes to a pipe) and asks each registered reactor to stop
//! through its [`ReactorHandle`]. A second signal while they are still
//! stopping, or a signal when no reactor runs, ends the process as the
//! default action would have.

use std::sync::{Mutex, OnceLock, PoisonError};

use async_signal::{Signal, Signals};
use futures::StreamExt;

use super::ReactorHandle;

struct Registry {
    next_id: u64,
    reactors: Vec<(u64, ReactorHandle)>,
    stopping: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next_id: 0,
    reactors: Vec::new(),
    stopping: false,
});
static LISTENER: OnceLock<bool> = OnceLock::new();

/// Keeps a running reactor registered for the signals.
pub(crate) struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        registry.reactors.retain(|(id, _)| *id != self.0);
        if registry.reactors.is_empty() {
            registry.stopping = false;
        }
    }
}

pub(crate) fn register(handle: ReactorHandle) -> Option<Registration> {
    if !*LISTENER.get_or_init(start_listener) {
        return None;
    }
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let id = registry.next_id;
    registry.next_id += 1;
    registry.reactors.push((id, handle));
    Some(Registration(id))
}

fn start_listener() -> bool {
    let mut signals = match Signals::new([Signal::Int, Signal::Term]) {
        Ok(signals) => signals,
        Err(err) => {
            log::warn!("could not watch SIGINT/SIGTERM ({err}); stop the reactor with stop()");
            return false;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("twill-signals".into())
        .spawn(move || {
            async_io::block_on(async {
                while let Some(Ok(signal)) = signals.next().await {
                    on_signal(signal);
                }
            })
        });
    spawned.is_ok()
}

fn on_signal(signal: Signal) {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if registry.reactors.is_empty() || registry.stopping {
        let code = match signal {
            Signal::Int => 130,
            _ => 143,
        };
        std::process::exit(code);
    }
    log::info!("received {signal:?}; stopping");
    registry.stopping = true;
    for (_, handle) in &registry.reactors {
        handle.stop();
    }
}
