//! Socket kinds, addresses and endpoint strings.

pub mod endpoint;
