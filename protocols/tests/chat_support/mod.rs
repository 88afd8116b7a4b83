//! What the chat examples say, for the tests that run them.

#![allow(dead_code)]

/// The prompt a new connection gets.
pub const PROMPT: &str = "What's your name?\r\n";
/// The answer to a name another user holds.
pub const TAKEN: &str = "Name taken, please choose another.\r\n";
/// Twisted's `LineReceiver.MAX_LENGTH`.
pub const MAX_LINE: usize = 16384;

pub fn welcome(name: &str) -> String {
    format!("Welcome, {name}!\r\n")
}

pub fn said(name: &str, line: &str) -> String {
    format!("<{name}> {line}\r\n")
}

pub fn joined(name: &str) -> String {
    format!("* {name} has joined\r\n")
}

pub fn left(name: &str) -> String {
    format!("* {name} has left\r\n")
}
