//! [`FramedWrite`]: a connection's [`StreamWriter`] as a `Sink` of
//! messages to encode.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::AsyncWrite;
use futures::Sink;
use twill::stream::StreamWriter;

use super::{EncodeError, Encoder};

/// A [`StreamWriter`] that takes messages and writes them encoded, as a
/// `futures` [`Sink`]: tokio-util's `FramedWrite`. Every encoder of this
/// crate works here as it does in a [`Framed`](super::Framed) protocol,
/// bodies handed over as `Bytes` included
/// ([`encode_parts`](Encoder::encode_parts): not copied).
///
/// Backpressure is the writer's: [`poll_ready`](Sink::poll_ready) (and so
/// `SinkExt::send`) waits while the connection's write buffer is over its
/// high watermark, so a task sending to a peer that does not read holds
/// about that much and no more. Each message is encoded straight into the
/// connection's write buffer; flushing only waits for that buffer to be
/// under the watermark, as the reactor sends it. Closing the sink shuts
/// the connection's writing side (FIN) once what is buffered is sent.
///
/// A message that cannot be encoded is an [`EncodeError`] from
/// `start_send` and nothing of it is written; the connection stays open.
/// Sending on a closing connection is [`EncodeError::Io`].
///
/// See [`FramedRead`](super::FramedRead) for an example.
#[derive(Debug)]
pub struct FramedWrite<E> {
    writer: StreamWriter,
    encoder: E,
}

impl<E> FramedWrite<E> {
    /// Encodes messages with `encoder` and writes them to `writer`.
    pub fn new(writer: StreamWriter, encoder: E) -> FramedWrite<E> {
        FramedWrite { writer, encoder }
    }

    /// The writer.
    pub fn get_ref(&self) -> &StreamWriter {
        &self.writer
    }

    /// The encoder.
    pub fn encoder(&self) -> &E {
        &self.encoder
    }

    /// The encoder, to change its settings.
    pub fn encoder_mut(&mut self) -> &mut E {
        &mut self.encoder
    }

    /// The writer and the encoder.
    pub fn into_parts(self) -> (StreamWriter, E) {
        (self.writer, self.encoder)
    }
}

impl<E, Item> Sink<Item> for FramedWrite<E>
where
    E: Encoder<Item> + Unpin,
{
    type Error = EncodeError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), EncodeError>> {
        let this = self.get_mut();
        Pin::new(&mut this.writer)
            .poll_flush(cx)
            .map_err(EncodeError::Io)
    }

    fn start_send(self: Pin<&mut Self>, item: Item) -> Result<(), EncodeError> {
        let this = self.get_mut();
        let encoder = &mut this.encoder;
        let written = this.writer.transport().write_with_body(|buf| {
            let start = buf.len();
            match encoder.encode_parts(item, buf) {
                Ok(body) => (Ok(()), body),
                Err(err) => {
                    buf.truncate(start);
                    (Err(err), None)
                }
            }
        });
        written.unwrap_or_else(|| {
            let why = if this.writer.is_closing() {
                "the connection is closed"
            } else {
                "the writing side is shut"
            };
            Err(EncodeError::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                why,
            )))
        })
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), EncodeError>> {
        self.poll_ready(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), EncodeError>> {
        let this = self.get_mut();
        Pin::new(&mut this.writer)
            .poll_close(cx)
            .map_err(EncodeError::Io)
    }
}
