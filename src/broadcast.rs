//! [`BroadcastGroup`]: one message to many connections, with a policy for
//! the ones that fall behind.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::reactor::Reactor;
use crate::time::{DelayedCall, ReactorTime};
use crate::transport::{Transport, WriteState};

/// How long a member may stay unwritable before [`SlowClient`] applies,
/// unless set with [`BroadcastGroup::grace`]: long enough for a client on
/// a slow link to take in a burst of a megabyte or so.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// How many bytes may wait in a member's write buffer before
/// [`SlowClient`] applies at once, unless set with
/// [`BroadcastGroup::max_buffer`]: 64 times the default high watermark, so
/// a burst to a client that reads at full speed never comes near it.
pub const DEFAULT_MAX_BUFFER: usize = 4 * 1024 * 1024;

/// What a [`BroadcastGroup`] does with a member that falls behind: one whose
/// transport has stayed [unwritable](Transport::is_writable) (its buffer
/// over the high watermark) for longer than the group's grace time, or
/// whose buffer would pass the group's maximum, or that is not on course
/// to catch up while senders wait for it
/// ([`BroadcastGroup::pause_while_behind`]).
///
/// Until then a member gets every message, whatever its buffer holds: a
/// short burst to a client that reads trips nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowClient {
    /// From then on, skip messages for it whenever it is unwritable,
    /// counting them ([`BroadcastGroup::dropped`]), and no longer wait for
    /// it ([`BroadcastGroup::pause_while_behind`]); once it drains to its
    /// low watermark it gets messages again. What it does get is whole and
    /// in order: a message is written entirely or not at all. tokio's
    /// `broadcast` channel, whose receiver sees `Lagged(n)`.
    DropMessages,
    /// Abort its connection (what is buffered for it is discarded and the
    /// peer sees a reset) and take it out of the group; its protocol's
    /// `connection_lost` receives [`Reason::Failed`](crate::Reason::Failed)
    /// with [`FellBehind`]. Netty users write this by hand on
    /// `Channel.isWritable()`.
    Disconnect,
}

/// Why a [`BroadcastGroup`] with [`SlowClient::Disconnect`] closed a
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FellBehind {
    /// Bytes waiting in its write buffer when it was closed.
    pub buffered: usize,
    /// How long it had been unwritable.
    pub behind_for: Duration,
}

impl fmt::Display for FellBehind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fell behind the broadcast: {} bytes unsent, not writable for {:.1} s",
            self.buffered,
            self.behind_for.as_secs_f64()
        )
    }
}

impl std::error::Error for FellBehind {}

/// A set of connections that receive the same messages: Netty's
/// `ChannelGroup`, with tokio's `broadcast` answer to slow receivers.
///
/// [`broadcast`](Self::broadcast) writes one [`Bytes`] to every member: each
/// member's buffer shares it, except that a small message queued behind
/// others is copied into the member's buffer (cheaper than a reference to
/// count and a piece to send apart). Members that close are taken out
/// on the next broadcast if the protocol did not
/// [`remove`](Self::remove) them itself.
///
/// # Bounded memory, and nothing lost for those who read
///
/// A member that does not read would otherwise hold a copy of every message
/// for ever. The group lets a member's buffer grow while it is unwritable
/// for at most the [grace](Self::grace) time and at most
/// [`max_buffer`](Self::max_buffer) bytes; past either, the
/// [`SlowClient`] policy applies. So the group holds at most about
/// `max_buffer` bytes per member, whatever the members do.
///
/// A member that reads, but more slowly than the senders send for a
/// while, would fall behind too. [`pause_while_behind`](Self::pause_while_behind),
/// called after each broadcast of a sender's input, stops reading from
/// that sender while a member is behind and catching up: the member
/// misses nothing, as a producer paused by its consumer in Twisted. While
/// senders wait, the group looks at each member behind every twentieth of
/// the grace time (100 ms by default): one that has not drained fast enough
/// to reach its low watermark within its grace time is given up on then.
/// So a client that stopped reading, or reads far more slowly than the
/// others are sent, holds the senders for 100 ms once, not for the grace
/// time, and twenty of them for two seconds at most.
///
/// Whether a member is behind is decided from its transport at each
/// broadcast and, while something waits for the group, when a member
/// drains, at each look, and when a grace time runs out.
///
/// # Examples
///
/// ```
/// use twill::broadcast::{BroadcastGroup, SlowClient};
/// use twill::testing::StringTransport;
///
/// let group = BroadcastGroup::new(SlowClient::DropMessages);
/// let (alice, bob) = (StringTransport::new(), StringTransport::new());
/// group.add(&alice.transport());
/// group.add(&bob.transport());
///
/// group.broadcast_except(&alice.transport(), "from alice\n");
/// assert_eq!(alice.value(), b"");
/// assert_eq!(bob.value(), b"from alice\n");
///
/// // Bob stops reading: 5 MiB wait for him, past the group's maximum.
/// bob.set_write_buffer_size(5 << 20);
/// assert_eq!(group.broadcast("news\n"), 1);
/// assert_eq!(alice.value(), b"news\n");
/// assert_eq!(group.dropped(&bob.transport()), Some(1));
/// ```
#[derive(Clone)]
pub struct BroadcastGroup {
    inner: Rc<RefCell<Group>>,
}

struct Group {
    members: Vec<Member>,
    policy: SlowClient,
    grace: Duration,
    max_buffer: usize,
    time: Option<Rc<dyn ReactorTime>>,
    dropped: u64,
    disconnected: u64,
    /// Run once no member is behind within its grace time
    /// ([`BroadcastGroup::when_writable`]).
    waiters: Vec<Box<dyn FnOnce()>>,
    /// Wakes the group when the first grace time among the members behind
    /// runs out, while there are waiters.
    deadline: Option<DelayedCall>,
    /// Senders paused by `hold`, each once however many messages of one
    /// read it relayed.
    held: Vec<Transport>,
}

struct Member {
    transport: Transport,
    /// When it was first seen unwritable, since it last was writable.
    behind_since: Option<Instant>,
    /// While behind: when its progress was last looked at, and its
    /// `bytes_sent` then.
    progress: Option<(Instant, u64)>,
    /// Under `DropMessages`: it fell behind once, so it is not waited for
    /// again, and messages are skipped whenever it is unwritable.
    lagged: bool,
    dropped: u64,
    /// The group asked its transport to say when it is writable.
    watched: bool,
}

impl BroadcastGroup {
    /// An empty group that treats members that fall behind by `policy`,
    /// with the default grace time ([`DEFAULT_GRACE`]) and maximum
    /// ([`DEFAULT_MAX_BUFFER`]).
    pub fn new(policy: SlowClient) -> BroadcastGroup {
        BroadcastGroup {
            inner: Rc::new(RefCell::new(Group {
                members: Vec::new(),
                policy,
                grace: DEFAULT_GRACE,
                max_buffer: DEFAULT_MAX_BUFFER,
                time: None,
                dropped: 0,
                disconnected: 0,
                waiters: Vec::new(),
                deadline: None,
                held: Vec::new(),
            })),
        }
    }

    /// How long a member may stay unwritable (over its high watermark)
    /// before the policy applies. `Duration::ZERO` applies it as soon as a
    /// member is seen unwritable.
    pub fn grace(self, grace: Duration) -> BroadcastGroup {
        self.inner.borrow_mut().grace = grace;
        self
    }

    /// How many bytes may wait in a member's write buffer: a message that
    /// would take it past this applies the policy at once, grace or not.
    pub fn max_buffer(self, bytes: usize) -> BroadcastGroup {
        self.inner.borrow_mut().max_buffer = bytes;
        self
    }

    /// Measures the grace time on `time` (a [`Clock`](crate::task::Clock)
    /// in tests) instead of the current thread's reactor.
    pub fn clock(self, time: Rc<dyn ReactorTime>) -> BroadcastGroup {
        self.inner.borrow_mut().time = Some(time);
        self
    }

    /// Adds a connection; false if it is a member already.
    pub fn add(&self, transport: &Transport) -> bool {
        let mut group = self.inner.borrow_mut();
        if group.position(transport).is_some() {
            return false;
        }
        group.members.push(Member {
            transport: transport.clone(),
            behind_since: None,
            progress: None,
            lagged: false,
            dropped: 0,
            watched: false,
        });
        true
    }

    /// Takes a connection out; false if it was not a member.
    pub fn remove(&self, transport: &Transport) -> bool {
        let removed = {
            let mut group = self.inner.borrow_mut();
            match group.position(transport) {
                Some(at) => {
                    group.members.remove(at);
                    true
                }
                None => false,
            }
        };
        if removed {
            // It may have been the one the others waited for.
            self.wake();
        }
        removed
    }

    /// Whether `transport` is a member.
    pub fn contains(&self, transport: &Transport) -> bool {
        self.inner.borrow().position(transport).is_some()
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.inner.borrow().members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `message` to every member; returns how many it was written
    /// to.
    pub fn broadcast(&self, message: impl Into<Bytes>) -> usize {
        self.send(None, &message.into(), false)
    }

    /// Writes `message` to every member but `sender` (which need not be a
    /// member); returns how many it was written to.
    pub fn broadcast_except(&self, sender: &Transport, message: impl Into<Bytes>) -> usize {
        self.send(Some(sender), &message.into(), false)
    }

    /// Relays `message` from `sender`: writes it to every member but
    /// `sender`, as [`broadcast_except`](Self::broadcast_except), then
    /// holds `sender` as [`pause_while_behind`](Self::pause_while_behind)
    /// does, in one pass over the members. What a relay (a chat, the
    /// Spreader) calls for each message a member sends.
    pub fn broadcast_from(&self, sender: &Transport, message: impl Into<Bytes>) -> usize {
        self.send(Some(sender), &message.into(), true)
    }

    /// Whether every member keeps up: none is
    /// [unwritable](Transport::is_writable) and still within its grace
    /// time. Members that the policy gave up on do not count. Asking
    /// applies the policy to members whose grace time is over, or, while
    /// senders wait, that are not on course to catch up (under
    /// [`SlowClient::Disconnect`], they are disconnected now).
    pub fn is_writable(&self) -> bool {
        let disconnect = self.inner.borrow_mut().refresh();
        self.disconnect(disconnect);
        !self.inner.borrow().congested()
    }

    /// Runs `f` once the group is [writable](Self::is_writable): when every
    /// member behind has drained, left, or been given up on at the end of
    /// its grace time (which this wait enforces, broadcasts or not). If
    /// the group is writable now, `f` runs before this returns.
    pub fn when_writable(&self, f: impl FnOnce() + 'static) {
        if self.is_writable() {
            f();
            return;
        }
        self.inner.borrow_mut().waiters.push(Box::new(f));
        self.watch();
    }

    /// Pauses reading from `sender` while the group is not
    /// [writable](Self::is_writable), and resumes it after: the sources of
    /// a broadcast wait for a member that is behind but catching up, so
    /// that member misses nothing, and for one that is not, for a
    /// twentieth of the grace time (see [Bounded memory](Self#bounded-memory-and-nothing-lost-for-those-who-read)).
    /// Call it after each broadcast from `sender`'s input.
    ///
    /// It resumes reading with [`Transport::resume_reading`], so a protocol
    /// that pauses reading for reasons of its own as well must not use it.
    ///
    /// ```
    /// use twill::broadcast::{BroadcastGroup, SlowClient};
    /// use twill::testing::StringTransport;
    ///
    /// let group = BroadcastGroup::new(SlowClient::DropMessages);
    /// let (sender, reader) = (StringTransport::new(), StringTransport::new());
    /// group.add(&sender.transport());
    /// group.add(&reader.transport());
    ///
    /// reader.set_write_buffer_size(100 << 10); // over its high watermark
    /// group.broadcast_except(&sender.transport(), "news");
    /// group.pause_while_behind(&sender.transport());
    /// assert!(sender.reading_paused());
    ///
    /// reader.set_write_buffer_size(0); // it caught up
    /// assert!(!sender.reading_paused());
    /// ```
    pub fn pause_while_behind(&self, sender: &Transport) {
        if !self.is_writable() {
            self.hold(sender);
        }
    }

    /// Pauses reading from `sender` until the group is writable.
    fn hold(&self, sender: &Transport) {
        {
            let mut group = self.inner.borrow_mut();
            if group.held.iter().any(|h| h.same_connection(sender)) {
                return;
            }
            group.held.push(sender.clone());
        }
        sender.pause_reading();
        let (weak, sender) = (Rc::downgrade(&self.inner), sender.clone());
        self.when_writable(move || {
            if let Some(inner) = weak.upgrade() {
                inner
                    .borrow_mut()
                    .held
                    .retain(|h| !h.same_connection(&sender));
            }
            sender.resume_reading();
        });
    }

    /// Messages skipped for `transport` under [`SlowClient::DropMessages`]
    /// since it joined; `None` if it is not a member.
    pub fn dropped(&self, transport: &Transport) -> Option<u64> {
        let group = self.inner.borrow();
        group
            .position(transport)
            .map(|at| group.members[at].dropped)
    }

    /// Whether `transport` is a member that messages are being skipped for
    /// now.
    pub fn is_lagging(&self, transport: &Transport) -> bool {
        let group = self.inner.borrow();
        group.position(transport).is_some_and(|at| {
            let member = &group.members[at];
            member.lagged && !member.transport.is_writable()
        })
    }

    /// Messages skipped, for all members that ever were, in total.
    pub fn total_dropped(&self) -> u64 {
        self.inner.borrow().dropped
    }

    /// Members disconnected by [`SlowClient::Disconnect`], in total.
    pub fn disconnected(&self) -> u64 {
        self.inner.borrow().disconnected
    }

    /// Bytes waiting in the members' write buffers, together: what the
    /// group holds now.
    pub fn buffered(&self) -> usize {
        let group = self.inner.borrow();
        group
            .members
            .iter()
            .map(|member| member.transport.write_buffer_size())
            .sum()
    }

    /// Writes `message` to every member but `sender`, bringing each
    /// member's standing up to date on the way (one look at each); holds
    /// `sender` if `hold` and a member is behind.
    fn send(&self, sender: Option<&Transport>, message: &Bytes, hold: bool) -> usize {
        let mut written = 0;
        let (disconnect, congested) = {
            let mut group = self.inner.borrow_mut();
            let holding = !group.waiters.is_empty();
            let Group {
                members,
                policy,
                grace,
                max_buffer,
                time,
                dropped,
                ..
            } = &mut *group;
            let (policy, grace, max_buffer) = (*policy, *grace, *max_buffer);
            let mut now = Now::new(time);
            let mut disconnect = Vec::new();
            let mut congested = false;
            let mut skipped = 0;
            // Writing does not call back into any protocol (the reactor
            // flushes at the end of the turn), so it is done in the loop.
            members.retain_mut(|member| {
                let state = member.transport.write_state();
                if !member.stand(state, &mut now, holding, policy, grace, &mut disconnect) {
                    return false;
                }
                congested |= member.is_behind();
                if sender.is_some_and(|s| s.same_connection(&member.transport)) {
                    return true;
                }
                let skip = member.lagged && !state.writable;
                if !skip && state.buffered.saturating_add(message.len()) <= max_buffer {
                    member.transport.write_shared(message);
                    written += 1;
                    return true;
                }
                let behind_for = member.behind_for(&mut now);
                match member.give_up(policy, behind_for) {
                    Some(why) => {
                        disconnect.push((member.transport.clone(), why));
                        false
                    }
                    None => {
                        member.dropped += 1;
                        skipped += 1;
                        true
                    }
                }
            });
            *dropped += skipped;
            (disconnect, congested)
        };
        self.disconnect(disconnect);
        if let (true, true, Some(sender)) = (hold, congested, sender) {
            self.hold(sender);
        }
        written
    }

    /// Aborts the members the policy gave up on (out of the group already).
    fn disconnect(&self, members: Vec<(Transport, FellBehind)>) {
        if members.is_empty() {
            return;
        }
        self.inner.borrow_mut().disconnected += members.len() as u64;
        for (transport, why) in members {
            log::warn!("disconnecting {}: {why}", transport.peer());
            transport.abort_with(why);
        }
    }

    /// Runs the waiters if the group is writable; else makes sure it hears
    /// when that may have changed.
    fn wake(&self) {
        if self.inner.borrow().waiters.is_empty() {
            return;
        }
        if !self.is_writable() {
            self.watch();
            return;
        }
        let waiters = {
            let mut group = self.inner.borrow_mut();
            if let Some(deadline) = group.deadline.take() {
                let _ = deadline.cancel();
            }
            std::mem::take(&mut group.waiters)
        };
        for waiter in waiters {
            waiter();
        }
    }

    /// Asks every member behind to say when it is writable, and the clock
    /// to say when the first grace time runs out.
    fn watch(&self) {
        let weak = Rc::downgrade(&self.inner);
        let (to_watch, first_deadline, time) = {
            let mut group = self.inner.borrow_mut();
            let (grace, now) = (group.grace, group.now());
            let mut first_deadline: Option<Instant> = None;
            let mut to_watch = Vec::new();
            for member in group.members.iter_mut().filter(|m| m.is_behind()) {
                // Its progress is judged from now on.
                let sent = member.transport.bytes_sent();
                member.progress.get_or_insert((now, sent));
                let deadlines = member.behind_since.map(|since| since + grace);
                for deadline in deadlines.into_iter().chain(member.next_probe(grace)) {
                    first_deadline = Some(first_deadline.map_or(deadline, |d| d.min(deadline)));
                }
                if !member.watched {
                    member.watched = true;
                    to_watch.push(member.transport.clone());
                }
            }
            if let Some(old) = group.deadline.take() {
                let _ = old.cancel();
            }
            (to_watch, first_deadline, group.time())
        };
        for transport in to_watch {
            let (weak, watched) = (weak.clone(), transport.clone());
            transport.when_writable(move || {
                if let Some(inner) = weak.upgrade() {
                    {
                        let mut group = inner.borrow_mut();
                        if let Some(at) = group.position(&watched) {
                            group.members[at].watched = false;
                        }
                    }
                    BroadcastGroup { inner }.wake();
                }
            });
        }
        if let (Some(deadline), Some(time)) = (first_deadline, time) {
            let delay = deadline.saturating_duration_since(time.now());
            let call = time.call_later(
                delay,
                Box::new(move || {
                    if let Some(inner) = weak.upgrade() {
                        inner.borrow_mut().deadline = None;
                        BroadcastGroup { inner }.wake();
                    }
                }),
            );
            self.inner.borrow_mut().deadline = Some(call);
        }
    }
}

impl Group {
    fn position(&self, transport: &Transport) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.transport.same_connection(transport))
    }

    fn time(&self) -> Option<Rc<dyn ReactorTime>> {
        time_source(&self.time)
    }

    fn now(&self) -> Instant {
        Now::new(&self.time).get()
    }

    /// Brings every member's standing up to date: closing members leave,
    /// members that drained are back, members behind for the grace time
    /// are given up on. Returns those to disconnect.
    ///
    /// While senders wait, a member is also given up on as soon as it is
    /// not on course to drain within its grace time (see
    /// [`Member::on_course`]): a slow reader holds the senders for a probe
    /// of a twentieth of the grace time, not for all of it.
    fn refresh(&mut self) -> Vec<(Transport, FellBehind)> {
        let (policy, grace) = (self.policy, self.grace);
        let holding = !self.waiters.is_empty();
        let mut now = Now::new(&self.time);
        let mut disconnect = Vec::new();
        self.members.retain_mut(|member| {
            let state = member.transport.write_state();
            member.stand(state, &mut now, holding, policy, grace, &mut disconnect)
        });
        disconnect
    }

    /// Whether a member is behind and not given up on yet.
    fn congested(&self) -> bool {
        self.members.iter().any(Member::is_behind)
    }
}

/// How long a member behind is watched before its progress is judged.
fn probe(grace: Duration) -> Duration {
    grace / 20
}

/// The group's clock, or else the current reactor's.
fn time_source(time: &Option<Rc<dyn ReactorTime>>) -> Option<Rc<dyn ReactorTime>> {
    match time {
        Some(time) => Some(time.clone()),
        None => Reactor::current().map(|reactor| Rc::new(reactor) as Rc<dyn ReactorTime>),
    }
}

/// The time, read once and only if needed: a pass over members that all
/// keep up never asks.
struct Now<'a> {
    time: &'a Option<Rc<dyn ReactorTime>>,
    now: Option<Instant>,
}

impl<'a> Now<'a> {
    fn new(time: &'a Option<Rc<dyn ReactorTime>>) -> Now<'a> {
        Now { time, now: None }
    }

    fn get(&mut self) -> Instant {
        let time = self.time;
        *self.now.get_or_insert_with(|| {
            time_source(time)
                .map(|time| time.now())
                .unwrap_or_else(Instant::now)
        })
    }
}

impl Member {
    /// Brings its standing up to date from `state`: false if it leaves the
    /// group (closing, or disconnected by the policy: then it is added to
    /// `disconnect`). Behind for the grace time, or while senders wait
    /// (`holding`) not on course to catch up, it is given up on.
    fn stand(
        &mut self,
        state: WriteState,
        now: &mut Now<'_>,
        holding: bool,
        policy: SlowClient,
        grace: Duration,
        disconnect: &mut Vec<(Transport, FellBehind)>,
    ) -> bool {
        if state.closing {
            return false;
        }
        if state.writable {
            self.behind_since = None;
            self.progress = None;
            return true;
        }
        if self.lagged {
            return true;
        }
        let now = now.get();
        let since = *self.behind_since.get_or_insert(now);
        let behind_for = now.saturating_duration_since(since);
        if behind_for < grace && (!holding || self.on_course(now, grace - behind_for, grace)) {
            return true;
        }
        match self.give_up(policy, behind_for) {
            Some(why) => {
                disconnect.push((self.transport.clone(), why));
                false
            }
            None => true,
        }
    }

    /// How long it has been behind.
    fn behind_for(&self, now: &mut Now<'_>) -> Duration {
        self.behind_since.map_or(Duration::ZERO, |since| {
            now.get().saturating_duration_since(since)
        })
    }

    /// Unwritable, within its grace time (as of the last refresh).
    fn is_behind(&self) -> bool {
        !self.lagged && self.behind_since.is_some()
    }

    /// Whether, at the rate it drained since it was last looked at (a
    /// probe of at least `grace / 20` ago), it reaches its low watermark
    /// within `remaining`. A member looked at too recently to tell is on
    /// course.
    fn on_course(&mut self, now: Instant, remaining: Duration, grace: Duration) -> bool {
        let sent = self.transport.bytes_sent();
        let (then, sent_then) = *self.progress.get_or_insert((now, sent));
        let elapsed = now.saturating_duration_since(then);
        if elapsed < probe(grace) {
            return true;
        }
        self.progress = Some((now, sent));
        let drained = u128::from(sent.saturating_sub(sent_then));
        let (_, low) = self.transport.write_buffer_limits();
        let excess = self.transport.write_buffer_size().saturating_sub(low) as u128;
        // excess / (drained / elapsed) <= remaining, without dividing.
        excess * elapsed.as_nanos() <= drained * remaining.as_nanos()
    }

    /// When the member's progress can next be judged.
    fn next_probe(&self, grace: Duration) -> Option<Instant> {
        self.progress.map(|(then, _)| then + probe(grace))
    }

    /// Applies the policy: under `DropMessages` it lags from now on (and
    /// `None` is returned); under `Disconnect`, why it goes.
    fn give_up(&mut self, policy: SlowClient, behind_for: Duration) -> Option<FellBehind> {
        let buffered = self.transport.write_buffer_size();
        match policy {
            SlowClient::DropMessages => {
                if !self.lagged {
                    log::info!(
                        "{} fell behind the broadcast ({buffered} bytes unsent): \
                         skipping messages for it whenever it is behind",
                        self.transport.peer()
                    );
                    self.lagged = true;
                }
                None
            }
            SlowClient::Disconnect => Some(FellBehind {
                buffered,
                behind_for,
            }),
        }
    }
}

impl fmt::Debug for BroadcastGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = self.inner.borrow();
        f.debug_struct("BroadcastGroup")
            .field("members", &group.members.len())
            .field("policy", &group.policy)
            .field("grace", &group.grace)
            .field("max_buffer", &group.max_buffer)
            .field("dropped", &group.dropped)
            .field("disconnected", &group.disconnected)
            .finish()
    }
}
