//! The datagrams a port could not send at once, with the limits that keep
//! it bounded and the watermark state that paces the protocol.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use super::error::SendQueueFull;

/// A whole datagram waiting for the socket, with where it goes (`None`:
/// to the connected peer).
struct Queued {
    data: Bytes,
    to: Option<SocketAddr>,
}

/// What each queued datagram costs beside its payload, so that a flood of
/// empty datagrams is bounded too.
pub(super) const DATAGRAM_OVERHEAD: usize = std::mem::size_of::<Queued>();

/// What [`SendQueue::send_with`] did.
#[derive(Debug, Default)]
pub(super) struct Sent {
    /// The queue drained to its low watermark after a pause: tell the
    /// protocol to resume.
    pub(super) resume: bool,
    /// Datagrams the socket refused for good (each was dropped).
    pub(super) errors: Vec<io::Error>,
}

/// A FIFO of whole datagrams, sized in bytes (payload plus
/// [`DATAGRAM_OVERHEAD`] each).
pub(super) struct SendQueue {
    datagrams: VecDeque<Queued>,
    size: usize,
    high: usize,
    low: usize,
    max: usize,
    /// The protocol was told to pause writing.
    paused: bool,
}

impl SendQueue {
    pub(super) fn new(high: usize, low: usize, max: usize) -> Self {
        SendQueue {
            datagrams: VecDeque::new(),
            size: 0,
            high,
            low,
            max,
            paused: false,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) fn len(&self) -> usize {
        self.datagrams.len()
    }

    #[cfg(test)]
    pub(super) fn is_paused(&self) -> bool {
        self.paused
    }

    /// Queues a datagram. `Ok(true)`: the queue just went over its high
    /// watermark, tell the protocol to pause. Refused past the cap.
    pub(super) fn push(
        &mut self,
        data: Bytes,
        to: Option<SocketAddr>,
    ) -> Result<bool, SendQueueFull> {
        let cost = data.len() + DATAGRAM_OVERHEAD;
        if self.size + cost > self.max {
            return Err(SendQueueFull {
                queued: self.size,
                max: self.max,
            });
        }
        self.size += cost;
        self.datagrams.push_back(Queued { data, to });
        let pause = !self.paused && self.size > self.high;
        self.paused |= pause;
        Ok(pause)
    }

    /// Sends queued datagrams in order with `send`, at most `budget` of
    /// them, until it would block. A datagram `send` fails for another
    /// reason is dropped and its error returned.
    pub(super) fn send_with(
        &mut self,
        budget: usize,
        mut send: impl FnMut(&[u8], Option<&SocketAddr>) -> io::Result<()>,
    ) -> Sent {
        let mut sent = Sent::default();
        for _ in 0..budget {
            let Some(front) = self.datagrams.front() else {
                break;
            };
            match send(&front.data, front.to.as_ref()) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => sent.errors.push(err),
                Ok(()) => {}
            }
            self.pop();
        }
        if self.paused && self.size <= self.low {
            self.paused = false;
            sent.resume = true;
        }
        sent
    }

    fn pop(&mut self) {
        if let Some(done) = self.datagrams.pop_front() {
            self.size -= done.data.len() + DATAGRAM_OVERHEAD;
        }
    }

    /// Drops everything queued; returns how many datagrams that was.
    pub(super) fn clear(&mut self) -> usize {
        let dropped = self.datagrams.len();
        self.datagrams.clear();
        self.size = 0;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(_: &[u8], _: Option<&SocketAddr>) -> io::Result<()> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    #[test]
    fn pauses_once_past_high_refuses_past_max_and_resumes_at_low() {
        let each = 100 + DATAGRAM_OVERHEAD;
        let mut queue = SendQueue::new(3 * each, each, 5 * each);
        let datagram = || Bytes::from(vec![7; 100]);
        for _ in 0..3 {
            assert_eq!(queue.push(datagram(), None), Ok(false));
        }
        assert_eq!(queue.push(datagram(), None), Ok(true), "over high: pause");
        assert_eq!(queue.push(datagram(), None), Ok(false), "told once");
        let full = queue.push(datagram(), None).unwrap_err();
        assert_eq!((full.queued, full.max), (5 * each, 5 * each));
        assert_eq!(queue.len(), 5);

        assert!(!queue.send_with(10, blocked).resume);
        assert_eq!(queue.len(), 5, "nothing leaves while blocked");
        let sent = queue.send_with(3, |_, _| Ok(()));
        assert!(!sent.resume, "two left is above low");
        let sent = queue.send_with(1, |_, _| Ok(()));
        assert!(sent.resume && !queue.is_paused());
        assert_eq!(queue.size(), each);
    }

    #[test]
    fn a_failed_datagram_is_dropped_and_reported_and_the_rest_go_on() {
        let mut queue = SendQueue::new(1 << 20, 0, 1 << 20);
        for byte in [1u8, 2, 3] {
            queue.push(Bytes::from(vec![byte]), None).unwrap();
        }
        let mut delivered = Vec::new();
        let sent = queue.send_with(10, |data, _| {
            if data == [2] {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            delivered.push(data[0]);
            Ok(())
        });
        assert_eq!(delivered, [1, 3]);
        assert_eq!(sent.errors.len(), 1);
        assert!(queue.is_empty() && queue.size() == 0);
    }

    #[test]
    fn empty_datagrams_count_against_the_cap() {
        let mut queue = SendQueue::new(0, 0, 10 * DATAGRAM_OVERHEAD);
        for _ in 0..10 {
            queue.push(Bytes::new(), None).unwrap();
        }
        assert!(queue.push(Bytes::new(), None).is_err());
    }
}
