//! [`FramedRead`]: a connection's [`StreamReader`] as a `Stream` of
//! decoded messages.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use twill::stream::StreamReader;

use super::{DecodeError, Decoder};

/// The messages a [`Decoder`] cuts from a [`StreamReader`], as a `futures`
/// [`Stream`]: tokio-util's `FramedRead`, for `async` code on twill. Every
/// decoder of this crate works here as it does in a [`Framed`](super::Framed)
/// protocol.
///
/// ```text
///   connection bytes ──► StreamReader buffer ──► Decoder::decode ──► Stream::Item
///                         (read into directly;    (in place: frames are split
///                          paused past its limit)  off the buffer, not copied)
/// ```
///
/// Each item is a message or a [`DecodeError`]. After a
/// [recoverable](DecodeError::is_recoverable) error (a frame too long,
/// which the decoder skipped) the stream goes on; after any other
/// (corrupt input, [`DecodeError::Io`] for a failed connection) it ends.
/// At the peer's EOF the decoder's [`decode_eof`](Decoder::decode_eof)
/// has the last word: leftover bytes that make no frame are a
/// [`DecodeError::Truncated`], then the stream ends.
///
/// The reader's limit does not cap frames: while the decoder waits for the
/// rest of a frame the reader reads on, so a frame is bounded by the
/// decoder's own maximum frame length.
///
/// # Examples
///
/// A line server: each line in, its length out, with the codecs `Framed`
/// uses.
///
/// ```
/// use futures::{SinkExt, StreamExt};
/// use twill::stream;
/// use twill_protocols::codec::{
///     Decoder, FramedRead, FramedWrite, LineBasedFrameDecoder, LineEncoder, StringDecoder,
/// };
///
/// let reactor = twill::Reactor::new()?;
/// let port = stream::start_server("127.0.0.1:0", |reader, writer| async move {
///     let decoder = LineBasedFrameDecoder::new(1024).and_then(StringDecoder);
///     let mut lines = FramedRead::new(reader, decoder);
///     let mut replies = FramedWrite::new(writer, LineEncoder::new());
///     while let Some(Ok(line)) = lines.next().await {
///         if replies.send(format!("{} chars", line.chars().count())).await.is_err() {
///             break;
///         }
///     }
/// })?;
/// let addr = port.host();
/// twill::spawn(async move {
///     let (mut reader, writer) = stream::open_connection(addr).await.unwrap();
///     writer.write("héllo\nworld!\n");
///     assert_eq!(&reader.read_line().await.unwrap()[..], b"5 chars\n");
///     assert_eq!(&reader.read_line().await.unwrap()[..], b"6 chars\n");
///     twill::stop();
/// });
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FramedRead<D> {
    reader: StreamReader,
    decoder: D,
    ended: bool,
}

impl<D: Decoder> FramedRead<D> {
    /// Decodes what `reader` reads with `decoder`.
    pub fn new(reader: StreamReader, decoder: D) -> FramedRead<D> {
        FramedRead {
            reader,
            decoder,
            ended: false,
        }
    }

    /// The reader.
    pub fn get_ref(&self) -> &StreamReader {
        &self.reader
    }

    /// The reader, to change its limit, say. Reading from it directly
    /// takes bytes the decoder has not seen.
    pub fn get_mut(&mut self) -> &mut StreamReader {
        &mut self.reader
    }

    /// The decoder.
    pub fn decoder(&self) -> &D {
        &self.decoder
    }

    /// The decoder, to change its settings.
    pub fn decoder_mut(&mut self) -> &mut D {
        &mut self.decoder
    }

    /// The reader and the decoder. Bytes not decoded yet are still in the
    /// reader: a protocol that changes framing (after an upgrade, say)
    /// reads them next.
    pub fn into_parts(self) -> (StreamReader, D) {
        (self.reader, self.decoder)
    }
}

impl<D: Decoder + Unpin> Stream for FramedRead<D> {
    type Item = Result<D::Item, DecodeError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let decoder = &mut this.decoder;
        let polled = this.reader.poll_parse(cx, |buf, eof| {
            if eof {
                decoder.decode_eof(buf)
            } else {
                decoder.decode(buf)
            }
        });
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(message))) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(Ok(None)) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(err)) => {
                this.ended = !err.is_recoverable();
                Poll::Ready(Some(Err(err)))
            }
        }
    }
}
