//! Closes a connection once its stream halves are all dropped.

use std::error::Error;
use std::fmt;

use crate::Transport;

/// Held by a connection's reader and every clone of its writer: the last
/// one dropped closes the connection, after what was written is sent.
/// Dropped by a panic unwinding (streams held in a protocol callback or
/// other code that panicked), it fails the connection instead, so the
/// logs see a failure, not a clean close. (A panicking `async` task's
/// streams are dropped after its panic was caught: `serve` fails its
/// connections itself.)
pub(crate) struct Closer {
    pub(crate) transport: Transport,
}

impl Drop for Closer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.transport.fail(TaskPanicked);
        } else {
            self.transport.lose_connection();
        }
    }
}

/// Why a connection failed when the task holding its streams panicked.
#[derive(Debug)]
struct TaskPanicked;

impl fmt::Display for TaskPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task holding this connection's streams panicked")
    }
}

impl Error for TaskPanicked {}
