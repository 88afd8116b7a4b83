//! Reading one datagram into the reactor's shared read buffer, whole or
//! not at all.
//!
//! Each datagram is read with one `recvmsg` into the room left in the
//! shared buffer, and split off it as `Bytes`: no copy, no allocation. The
//! shared buffer may have less room than the largest datagram allowed, so a
//! second piece of memory, the port's spill buffer, catches the rest; a
//! datagram that reaches into it (rare: one larger than the room left) is
//! copied out whole, and the shared buffer is given up so the next read
//! starts in a fresh one. The read asks for one byte more than the maximum
//! and, on Linux, passes `MSG_TRUNC` so the kernel returns the real size:
//! a datagram over the maximum is detected, never delivered cut short.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use socket2::{MaybeUninitSlice, Socket};

use super::error::DatagramTruncated;
use crate::reactor::Core;

/// On Linux, `recvmsg` with `MSG_TRUNC` returns a datagram's real length
/// even when it did not fit.
#[cfg(any(target_os = "linux", target_os = "android"))]
const RECV_FLAGS: std::ffi::c_int = libc::MSG_TRUNC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const RECV_FLAGS: std::ffi::c_int = 0;

/// One datagram read.
pub(super) enum Received {
    Datagram(Bytes, SocketAddr),
    /// Larger than the maximum, and dropped.
    Truncated(DatagramTruncated),
}

/// Reads datagrams of at most `max` bytes.
pub(super) struct Receiver {
    max: usize,
    /// Catches what does not fit in the shared buffer's room; grows once,
    /// to at most `max + 1` bytes.
    spill: Vec<u8>,
}

impl Receiver {
    pub(super) fn new(max: usize) -> Self {
        Receiver {
            max,
            spill: Vec::new(),
        }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Reads the next datagram, if the socket holds one (else
    /// `WouldBlock`).
    pub(super) fn receive(&mut self, core: &Core, socket: &Socket) -> io::Result<Received> {
        let want = self.max + 1;
        let mut shared = core.read_buffer();
        let room = shared.len().min(want);
        let spilled = want - room;
        if self.spill.len() < spilled {
            self.spill.resize(spilled, 0);
        }
        let (n, flags, addr) = {
            let (head, tail) = (&mut shared[..room], &mut self.spill[..spilled]);
            let mut bufs = [
                MaybeUninitSlice::new(as_uninit(head)),
                MaybeUninitSlice::new(as_uninit(tail)),
            ];
            let used = if spilled == 0 { 1 } else { 2 };
            socket.recv_from_vectored_with_flags(&mut bufs[..used], RECV_FLAGS)?
        };
        let from = addr.as_socket().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a datagram from a non-IP address",
            )
        })?;
        if n > self.max || flags.is_truncated() {
            return Ok(Received::Truncated(DatagramTruncated {
                size: n.max(want),
                max: self.max,
                from,
            }));
        }
        if n <= room {
            return Ok(Received::Datagram(shared.split_to(n).freeze(), from));
        }
        let mut whole = BytesMut::with_capacity(n);
        whole.extend_from_slice(&shared[..room]);
        whole.extend_from_slice(&self.spill[..n - room]);
        // Too little room for datagrams this size: the next read takes a
        // fresh shared buffer instead of spilling again.
        shared.truncate(0);
        Ok(Received::Datagram(whole.freeze(), from))
    }
}

fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the only writer
    // through the result is the kernel in `recvmsg`, which writes
    // initialised bytes: `buf` stays initialised.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}
