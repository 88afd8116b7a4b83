//! [`StreamReaderProtocol`]: the protocol under a connection's streams.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::closer::Closer;
use super::shared::Shared;
use super::{StreamReader, StreamWriter};
use crate::{Protocol, Reason, Transport};

/// What a connection's streams go to once it is made.
pub(crate) type OnMade = Box<dyn FnOnce(StreamReader, StreamWriter)>;

/// The protocol that feeds a connection's [`StreamReader`] and tells its
/// [`StreamWriter`] how the connection ended: asyncio's
/// `StreamReaderProtocol`. [`start_server`](super::start_server),
/// [`serve`](super::serve), [`open_connection`](super::open_connection) and
/// [`hand_over`](super::hand_over) put it on connections; it has no use of
/// its own.
///
/// It reads straight into the reader's buffer
/// ([`get_buffer`](Protocol::get_buffer)), keeps the connection open for
/// writing after the peer's EOF (as asyncio's does), and runs no user
/// code.
pub struct StreamReaderProtocol {
    shared: Rc<RefCell<Shared>>,
    /// Where the reactor reads to; each read moves into `shared.buf`.
    incoming: BytesMut,
    transport: Option<Transport>,
    on_made: Option<OnMade>,
    /// `on_made` waits for the TLS handshake: streams over TLS are ready
    /// once the peer is known to be who it should be (as asyncio's).
    after_handshake: bool,
}

impl StreamReaderProtocol {
    /// A protocol that hands the streams to `on_made` when the connection
    /// is made.
    pub(crate) fn new(on_made: OnMade) -> StreamReaderProtocol {
        StreamReaderProtocol {
            shared: Rc::new(RefCell::new(Shared::new(BytesMut::new()))),
            incoming: BytesMut::new(),
            transport: None,
            on_made: Some(on_made),
            after_handshake: false,
        }
    }

    fn hand_out_streams(&mut self) {
        if let (Some(on_made), Some(transport)) = (self.on_made.take(), &self.transport) {
            let (reader, writer) = streams(transport, self.shared.clone());
            on_made(reader, writer);
        }
    }

    /// A protocol for a connection already made, with `unread` bytes
    /// already read; and its streams.
    pub(crate) fn for_connection(
        transport: &Transport,
        unread: &[u8],
    ) -> (StreamReaderProtocol, StreamReader, StreamWriter) {
        let shared = Rc::new(RefCell::new(Shared::new(BytesMut::from(unread))));
        let protocol = StreamReaderProtocol {
            shared: shared.clone(),
            incoming: BytesMut::new(),
            transport: Some(transport.clone()),
            on_made: None,
            after_handshake: false,
        };
        let (reader, writer) = streams(transport, shared);
        (protocol, reader, writer)
    }
}

/// A reader and a writer for `transport`, sharing `shared`.
fn streams(transport: &Transport, shared: Rc<RefCell<Shared>>) -> (StreamReader, StreamWriter) {
    let closer = Rc::new(Closer {
        transport: transport.clone(),
    });
    (
        StreamReader::new(shared.clone(), closer.clone()),
        StreamWriter::new(shared, closer),
    )
}

impl Protocol for StreamReaderProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        #[cfg(feature = "tls")]
        {
            self.after_handshake = transport.tls().is_some_and(|tls| !tls.handshake_complete);
        }
        if !self.after_handshake {
            self.hand_out_streams();
        }
    }

    fn data_received(&mut self, data: Bytes) {
        let mut shared = self.shared.borrow_mut();
        shared.received(BytesMut::from(&data[..]), true, self.transport.as_ref());
    }

    fn get_buffer(&mut self) -> Option<&mut BytesMut> {
        Some(&mut self.incoming)
    }

    fn buffer_updated(&mut self, _appended: usize) {
        // Taken whole: `incoming` stays empty, so the reactor hands each
        // read over in a piece of its shared read buffer (no copy, no
        // allocation), and nothing here keeps that buffer alive.
        let data = std::mem::take(&mut self.incoming);
        let mut shared = self.shared.borrow_mut();
        shared.received(data, false, self.transport.as_ref());
    }

    fn eof_received(&mut self) -> bool {
        self.shared.borrow_mut().eof_received();
        // The writer may go on: the task closes when it is done.
        true
    }

    fn event_received(&mut self, event: crate::Event) {
        #[cfg(feature = "tls")]
        if self.after_handshake && event.is::<crate::tls::HandshakeCompleted>() {
            self.hand_out_streams();
            return;
        }
        log::debug!("stream connection: unhandled event {event:?}");
    }

    fn connection_lost(&mut self, reason: &Reason) {
        if self.on_made.is_some() && self.after_handshake {
            // No task ever saw this connection: say why it ended here.
            // (A client's open_tls_connection fails with it too.)
            let peer = self.transport.as_ref().map(Transport::peer);
            log::info!(
                "TLS handshake with {} failed, before its streams were ready: {reason}",
                peer.map_or_else(|| "a peer".to_owned(), |peer| peer.to_string())
            );
        }
        self.shared.borrow_mut().connection_lost(reason);
        self.transport = None;
    }
}

impl fmt::Debug for StreamReaderProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReaderProtocol")
            .field("buffered", &self.shared.borrow().buffered())
            .finish_non_exhaustive()
    }
}
