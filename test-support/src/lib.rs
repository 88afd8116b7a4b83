//! Helpers shared by the integration tests of the twill workspace (a
//! dev-dependency only, never published).
//!
//! - [`process`]: build the example programs once and run them as child
//!   processes, with bounded waits on their output and exit.
//! - [`client`]: a blocking loopback client with timeouts, for talking to
//!   those examples line by line or byte by byte.
//! - [`events`]: a shared log of what protocols see.
//! - [`files`]: a temporary folder for files handed to example processes.
//! - [`reactor`]: run a reactor under a watchdog, serve a factory on
//!   127.0.0.1 to a client thread, and connect with timeouts.
//! - [`tests_per_example!`]: one specification, tested against several
//!   examples that implement it.

#![warn(missing_docs)]

pub mod client;
pub mod events;
pub mod files;
pub mod pressure;
pub mod process;
pub mod python;
pub mod reactor;

/// One module per example, named after it, with a `#[test]` for each
/// specification: a function of the example's name, in the calling
/// module. For one behaviour written several ways (the chat as a codec
/// `Handler`, a `LineReceiver` and `async` tasks), so that each passes the
/// very same tests.
///
/// ```text
/// fn greets_by_name(example: &str) { /* run `example`, check it */ }
///
/// tests_per_example!([chat_server, async_chat] [greets_by_name]);
/// // chat_server::greets_by_name, async_chat::greets_by_name
/// ```
#[macro_export]
macro_rules! tests_per_example {
    ([$($example:ident),+ $(,)?] $specs:tt) => {
        $($crate::tests_per_example!(@one $example $specs);)+
    };
    (@one $example:ident [$($spec:ident),+ $(,)?]) => {
        mod $example {
            $(
                #[test]
                fn $spec() {
                    super::$spec(stringify!($example));
                }
            )+
        }
    };
}
