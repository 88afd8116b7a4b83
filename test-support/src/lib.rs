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

#![warn(missing_docs)]

pub mod client;
pub mod events;
pub mod files;
pub mod pressure;
pub mod process;
pub mod reactor;
