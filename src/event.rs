//! [`Event`]: a value of any type passed to a protocol beside its bytes.

use std::any::{type_name, Any};
use std::fmt;

/// Something that happened to a connection that is not bytes: an idle
/// timeout, a finished TLS handshake, or a value of the application's own.
/// Netty's user events (`userEventTriggered`).
///
/// An event is fired at a connection with
/// [`Transport::fire_event`](crate::Transport::fire_event), or by a
/// wrapper at the protocol inside it, and arrives in
/// [`Protocol::event_received`](crate::Protocol::event_received). Wrappers
/// pass on the events they do not consume, so one fired at the outermost
/// protocol travels inwards until someone takes it. The receiver asks for
/// the type it expects.
///
/// # Examples
///
/// ```
/// use twill::Event;
///
/// struct Shutdown { grace_ms: u64 }
///
/// let event = Event::new(Shutdown { grace_ms: 500 });
/// assert!(event.is::<Shutdown>());
/// assert_eq!(event.downcast_ref::<Shutdown>().unwrap().grace_ms, 500);
/// let other = Event::new("a note");
/// assert_eq!(other.downcast::<&str>().unwrap(), "a note");
/// ```
pub struct Event {
    value: Box<dyn Any>,
    type_name: &'static str,
}

impl Event {
    /// Wraps `value`.
    pub fn new<T: Any>(value: T) -> Event {
        Event {
            value: Box::new(value),
            type_name: type_name::<T>(),
        }
    }

    /// Whether the event holds a `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.value.is::<T>()
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.value.downcast_ref()
    }

    /// Takes the value out if it is a `T`; else gives the event back.
    ///
    /// # Errors
    ///
    /// The event, unchanged, when it holds another type.
    pub fn downcast<T: Any>(self) -> Result<T, Event> {
        let Event { value, type_name } = self;
        value
            .downcast()
            .map(|value| *value)
            .map_err(|value| Event { value, type_name })
    }

    /// The name of the value's type, for logs.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Event({})", self.type_name)
    }
}
