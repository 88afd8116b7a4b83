//! Twisted's framing protocols (`twisted.protocols.basic`), with Twisted's
//! names, defaults and rules.
//!
//! | Twisted | twill: implement | wrap in (a [`Protocol`](twill::Protocol)) | framing |
//! |---|---|---|---|
//! | `LineReceiver` | [`LineReceiver`] | [`LineReceiverProtocol`] | [`LineDecoder::new`] |
//! | `LineOnlyReceiver` | [`LineOnlyReceiver`] | [`LineOnlyReceiverProtocol`] | [`LineDecoder::line_only`] |
//! | `Int32StringReceiver`, `Int16…`, `Int8…` | [`StringReceiver`] | [`Int32StringReceiver`], [`Int16StringReceiver`], [`Int8StringReceiver`] | [`IntNDecoder`], [`IntNEncoder`] |
//! | `NetstringReceiver` | [`StringReceiver`] | [`NetstringReceiver`] | [`NetstringDecoder`], [`NetstringEncoder`] |
//!
//! Where a Twisted user subclasses and overrides `lineReceived` or
//! `stringReceived`, a twill user implements the trait and wraps the value:
//! `LineReceiverProtocol::new(MyLines)`, `NetstringReceiver::new(MyStrings)`.
//! Twisted's methods on `self` (`sendLine`, `setRawMode`, `pauseProducing`,
//! …) are on the context each callback gets ([`LineContext`],
//! [`LineOnlyContext`], [`StringContext`]); its class attributes
//! `delimiter` and `MAX_LENGTH` are associated constants of the traits,
//! overridable per connection with the wrappers' `with_delimiter` and
//! `with_max_length`.
//!
//! Defaults: delimiter `b"\r\n"` ([`DEFAULT_DELIMITER`]), line
//! `MAX_LENGTH` 16384 ([`DEFAULT_MAX_LINE_LENGTH`]), string `MAX_LENGTH`
//! 99999 ([`DEFAULT_MAX_STRING_LENGTH`]).
//!
//! The framing of each is a [`Decoder`](crate::codec::Decoder) (and for
//! strings an [`Encoder`](crate::codec::Encoder)) of the codec layer, so
//! the same wire format can also be spoken through a
//! [`Framed`](crate::codec::Framed) with a message-level
//! [`Handler`](crate::codec::Handler). The protocols here add what Twisted's
//! classes have beyond framing: raw mode, pausing with re-delivery of what
//! was buffered, and Twisted's callbacks for over-long input.
//!
//! Every protocol here stops delivering as soon as its transport is
//! closing, and never calls back into the receiver while a callback is
//! running: what a callback asks for (a mode switch, a pause, bytes handed
//! back) takes effect for the rest of the buffered input once it returns.
//!
//! Unlike Twisted's, every protocol here turns its transport's flow control
//! on when the connection is made: while its replies cannot leave, it stops
//! reading (see [the codec layer's backpressure](crate::codec#backpressure));
//! a receiver turns it off in `connection_made` with
//! `ctx.transport().set_flow_control(false)`.
//!
//! # Examples
//!
//! A netstring echo server and a line client, on a real reactor:
//!
//! ```
//! use bytes::Bytes;
//! use twill::Reactor;
//! use twill_protocols::basic::{
//!     LineContext, LineReceiver, LineReceiverProtocol, NetstringReceiver, StringContext,
//!     StringReceiver,
//! };
//!
//! struct Echo;
//!
//! impl StringReceiver for Echo {
//!     fn string_received(&mut self, ctx: &StringContext, string: Bytes) {
//!         ctx.send_string(string).unwrap();
//!     }
//! }
//!
//! struct Client;
//!
//! impl LineReceiver for Client {
//!     const DELIMITER: &'static [u8] = b",";
//!     fn connection_made(&mut self, ctx: &LineContext) {
//!         ctx.write("5:hello,");
//!     }
//!     fn line_received(&mut self, _: &LineContext, line: Bytes) {
//!         assert_eq!(line, "5:hello");
//!         twill::stop();
//!     }
//! }
//!
//! let reactor = Reactor::new()?;
//! let port = reactor.listen_tcp("127.0.0.1:0", |_peer| NetstringReceiver::new(Echo))?;
//! reactor.connect_tcp(port.host(), |_peer| LineReceiverProtocol::new(Client))?;
//! reactor.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod context;
mod driver;
mod int_string;
mod line_decoder;
mod line_only;
mod line_receiver;
mod netstring;
mod string_receiver;

pub use int_string::{
    Int16StringReceiver, Int32StringReceiver, Int8StringReceiver, IntNDecoder, IntNEncoder,
    IntNStringReceiver,
};
pub use line_decoder::{LineDecoder, DEFAULT_DELIMITER, DEFAULT_MAX_LINE_LENGTH};
pub use line_only::{LineOnlyContext, LineOnlyReceiver, LineOnlyReceiverProtocol};
pub use line_receiver::{LineContext, LineReceiver, LineReceiverProtocol};
pub use netstring::{NetstringDecoder, NetstringEncoder, NetstringReceiver};
pub use string_receiver::{
    StringContext, StringReceiver, StringTooLongError, DEFAULT_MAX_STRING_LENGTH,
};
