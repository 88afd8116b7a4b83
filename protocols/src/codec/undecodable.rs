//! What the protocols do with input that cannot be decoded: log why and
//! close the connection with the error.

use twill::Transport;

use super::DecodeError;

/// Logs `error` and closes the connection with it: what a decode error
/// does unless the handler decides otherwise.
pub(crate) fn close(transport: &Transport, error: DecodeError) {
    log::warn!("closing the connection with {}: {error}", transport.peer());
    transport.fail(error);
}

/// Closes the connection because decoding cannot go on (`why`), unless it
/// is closing already.
pub(crate) fn give_up(transport: &Transport, why: &str) {
    if !transport.is_closing() {
        close(transport, DecodeError::Corrupt(why.to_owned()));
    }
}
