//! Name resolution: the [`NameResolver`] a reactor asks for the addresses
//! of a host, the [`SystemResolver`] it asks by default, and the
//! [`StaticResolver`] tests and fixed deployments use.
//!
//! A resolver answers with a [`Deferred`], so a TCP client never blocks the
//! reactor on a lookup: the system's `getaddrinfo` runs on the `blocking`
//! crate's thread pool and its answer comes back on the reactor thread.
//!
//! Each reactor has its own resolver ([`Reactor::set_resolver`]). It is kept
//! in a table of the thread the reactor belongs to, keyed by that reactor,
//! so the reactor's own state needs no field for it; an entry goes when its
//! reactor has been dropped and the table is next changed.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::defer::{Deferred, Failure};
use crate::reactor::{Core, Reactor};
use crate::time::ReactorTime;

/// Finds the addresses of a host name: Twisted's `IHostnameResolver`, in
/// the shape of its simpler `IResolverSimple`.
///
/// [`Reactor::connect_tcp`] asks the reactor's resolver
/// ([`Reactor::set_resolver`]) for every name it connects to (an IP address
/// never reaches the resolver). The answer fires on the reactor thread; a
/// failure should carry an [`io::Error`] (its kind reaches the client
/// factory), and the order of the addresses is the order of preference.
///
/// A resolver should not hold its reactor (a [`Reactor`] handle) strongly:
/// the reactor keeps its resolver, and the two would keep each other alive.
///
/// # Examples
///
/// A resolver that sends every name to one address:
///
/// ```
/// use std::net::SocketAddr;
/// use twill::defer::{succeed, Deferred};
/// use twill::net::NameResolver;
/// use twill::Reactor;
///
/// struct Everything(std::net::IpAddr);
///
/// impl NameResolver for Everything {
///     fn resolve(&self, _host: &str, port: u16) -> Deferred<Vec<SocketAddr>> {
///         succeed(vec![SocketAddr::new(self.0, port)])
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// reactor.set_resolver(Everything("127.0.0.1".parse().unwrap()));
/// let answer = reactor.resolver().resolve("anything.example", 80);
/// let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
/// assert_eq!(answer.result().unwrap().unwrap(), [local]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait NameResolver {
    /// The addresses of `host`, each with `port`, most preferred first.
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>>;
}

impl<R: NameResolver + ?Sized> NameResolver for Rc<R> {
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>> {
        (**self).resolve(host, port)
    }
}

/// The system's resolver: `getaddrinfo` (the standard library's
/// [`ToSocketAddrs`]), run on the `blocking` crate's thread pool so the
/// reactor goes on meanwhile; the answer fires on the reactor thread (the
/// reactor must be running). The addresses come in the order the system
/// sorts them (RFC 6724: IPv6 first where it is routable).
///
/// A name that does not resolve fails with an [`io::Error`] of kind
/// `NotFound` and getaddrinfo's message; a system error (`EAI_SYSTEM`)
/// keeps its own kind. Cancelling the Deferred abandons the answer; the
/// lookup itself runs to its end on its thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl NameResolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>> {
        let host = host.to_owned();
        Deferred::from_future(async move {
            let lookup = blocking::unblock(move || {
                (host.as_str(), port).to_socket_addrs().map(Vec::from_iter)
            });
            lookup.await.map_err(|err| {
                if err.raw_os_error().is_some() {
                    Failure::from(err)
                } else {
                    Failure::from(io::Error::new(io::ErrorKind::NotFound, err.to_string()))
                }
            })
        })
    }
}

/// What a [`StaticResolver`] answers for one name.
#[derive(Clone)]
enum Entry {
    Addresses(Vec<SocketAddr>),
    Fails(io::ErrorKind, String),
    Never,
}

/// A resolver that answers from a table: for tests, and for deployments
/// that pin names to addresses (`/etc/hosts` of one program).
///
/// Each name maps to addresses (an address with port 0 takes the port asked
/// for), to a failure, or to no answer at all; an answer may come after a
/// delay. A name not in the table fails with `NotFound`. Clones share the
/// table, so a test can change it, and read [`lookups`](Self::lookups),
/// after handing a clone to the reactor.
///
/// Delays run on the clock given to [`with_clock`](Self::with_clock), else
/// on the reactor of the thread that asks.
///
/// # Examples
///
/// ```
/// use std::io;
/// use std::net::SocketAddr;
/// use twill::net::{NameResolver, StaticResolver};
/// use twill::Reactor;
///
/// let names = StaticResolver::new();
/// names.insert("db.internal", ["10.0.0.7:0".parse().unwrap(), "[fd00::7]:0".parse().unwrap()]);
/// names.insert_failure("gone.internal", io::ErrorKind::NotFound, "no such host");
///
/// let reactor = Reactor::new()?;
/// reactor.set_resolver(names.clone());
/// let answer = reactor.resolver().resolve("db.internal", 5432).result().unwrap().unwrap();
/// let expected: Vec<SocketAddr> = vec!["10.0.0.7:5432".parse().unwrap(), "[fd00::7]:5432".parse().unwrap()];
/// assert_eq!(answer, expected);
/// assert!(reactor.resolver().resolve("gone.internal", 1).result().unwrap().is_err());
/// assert_eq!(names.lookups(), ["db.internal", "gone.internal"]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct StaticResolver {
    table: Rc<RefCell<Table>>,
    clock: Option<Rc<dyn ReactorTime>>,
}

/// How many of the latest lookups a [`StaticResolver`] remembers: a
/// deployment that resolves for as long as it runs must not grow.
const LOOKUPS_KEPT: usize = 1024;

#[derive(Default)]
struct Table {
    entries: HashMap<String, (Entry, Duration)>,
    lookups: VecDeque<String>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> StaticResolver {
        StaticResolver::default()
    }

    /// The same table, with delays measured on `clock` (a
    /// [`Clock`](crate::task::Clock) in tests).
    pub fn with_clock(&self, clock: Rc<dyn ReactorTime>) -> StaticResolver {
        StaticResolver {
            table: self.table.clone(),
            clock: Some(clock),
        }
    }

    /// Answers `host` with `addrs`, in that order; an address with port 0
    /// (`"10.0.0.7:0"`) answers with the port asked for, any other keeps
    /// its own.
    pub fn insert(&self, host: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> &Self {
        self.set(host, Entry::Addresses(addrs.into_iter().collect()))
    }

    /// Answers `host` with `ips`, each with the port asked for.
    pub fn insert_ips(&self, host: &str, ips: impl IntoIterator<Item = IpAddr>) -> &Self {
        self.insert(host, ips.into_iter().map(|ip| SocketAddr::new(ip, 0)))
    }

    /// Fails lookups of `host` with an [`io::Error`] of `kind`.
    pub fn insert_failure(&self, host: &str, kind: io::ErrorKind, message: &str) -> &Self {
        self.set(host, Entry::Fails(kind, message.to_owned()))
    }

    /// Never answers for `host` (the Deferred fires only if cancelled).
    pub fn insert_silence(&self, host: &str) -> &Self {
        self.set(host, Entry::Never)
    }

    /// Answers (or fails) `host` only `delay` after it is asked.
    pub fn set_delay(&self, host: &str, delay: Duration) -> &Self {
        if let Some((_, d)) = self.table.borrow_mut().entries.get_mut(host) {
            *d = delay;
        }
        self
    }

    /// Forgets `host`: lookups fail with `NotFound` again.
    pub fn remove(&self, host: &str) -> &Self {
        self.table.borrow_mut().entries.remove(host);
        self
    }

    /// The names asked for so far, in order: the latest 1,024 of them.
    pub fn lookups(&self) -> Vec<String> {
        self.table.borrow().lookups.iter().cloned().collect()
    }

    fn set(&self, host: &str, entry: Entry) -> &Self {
        let mut table = self.table.borrow_mut();
        let delay = table
            .entries
            .get(host)
            .map_or(Duration::ZERO, |(_, delay)| *delay);
        table.entries.insert(host.to_owned(), (entry, delay));
        self
    }
}

impl NameResolver for StaticResolver {
    fn resolve(&self, host: &str, port: u16) -> Deferred<Vec<SocketAddr>> {
        let (entry, delay) = {
            let mut table = self.table.borrow_mut();
            if table.lookups.len() == LOOKUPS_KEPT {
                table.lookups.pop_front();
            }
            table.lookups.push_back(host.to_owned());
            table.entries.get(host).cloned().unwrap_or_else(|| {
                let unknown = Entry::Fails(io::ErrorKind::NotFound, "no such host".to_owned());
                (unknown, Duration::ZERO)
            })
        };
        let answer: Result<Vec<SocketAddr>, io::Error> = match entry {
            Entry::Never => return Deferred::new(),
            Entry::Fails(kind, message) => Err(io::Error::new(kind, message)),
            Entry::Addresses(addrs) => Ok(addrs
                .into_iter()
                .map(|addr| match addr.port() {
                    0 => SocketAddr::new(addr.ip(), port),
                    _ => addr,
                })
                .collect()),
        };
        let d = Deferred::new();
        let fire = d.resolver();
        let deliver = move || match answer {
            Ok(addrs) => fire.callback(addrs),
            Err(err) => fire.errback(err),
        };
        if delay.is_zero() {
            deliver();
        } else {
            let clock = self
                .clock
                .clone()
                .unwrap_or_else(|| Rc::new(crate::reactor()));
            clock.call_later(delay, Box::new(deliver));
        }
        d
    }
}

impl fmt::Debug for StaticResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.borrow();
        let mut names: Vec<&String> = table.entries.keys().collect();
        names.sort();
        f.debug_struct("StaticResolver")
            .field("names", &names)
            .finish()
    }
}

/// A reactor (held weakly) and the resolver it was given.
type ResolverEntry = (Weak<Core>, Rc<dyn NameResolver>);

thread_local! {
    /// The resolver of each reactor of this thread that was given one.
    static RESOLVERS: RefCell<Vec<ResolverEntry>> = const { RefCell::new(Vec::new()) };
}

/// The resolver of the reactor that owns `core`.
pub(crate) fn resolver_for(core: &Rc<Core>) -> Rc<dyn NameResolver> {
    RESOLVERS
        .with(|table| {
            table
                .borrow()
                .iter()
                .find(|(owner, _)| std::ptr::eq(owner.as_ptr(), Rc::as_ptr(core)))
                .map(|(_, resolver)| resolver.clone())
        })
        .unwrap_or_else(|| Rc::new(SystemResolver))
}

impl Reactor {
    /// Makes `resolver` the one this reactor's TCP clients ask for names
    /// (by default, [`SystemResolver`]). Connections already resolving keep
    /// the answer they wait for.
    pub fn set_resolver(&self, resolver: impl NameResolver + 'static) {
        let resolver: Rc<dyn NameResolver> = Rc::new(resolver);
        let core = Rc::downgrade(self.core());
        let replaced = RESOLVERS.with(|table| {
            let mut table = table.borrow_mut();
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *table)
                .into_iter()
                .partition(|(owner, _)| owner.strong_count() == 0 || owner.ptr_eq(&core));
            *table = kept;
            table.push((core, resolver));
            gone
        });
        // Dropped with the table free: a resolver's drop may run anything.
        drop(replaced);
    }

    /// The resolver this reactor's TCP clients ask (see
    /// [`set_resolver`](Self::set_resolver)).
    pub fn resolver(&self) -> Rc<dyn NameResolver> {
        resolver_for(self.core())
    }

    /// The IP addresses of `host` (Twisted's `reactor.resolve`), through
    /// this reactor's resolver, without repeats, in its order. An IP address
    /// answers itself at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use twill::net::StaticResolver;
    /// use twill::Reactor;
    ///
    /// let reactor = Reactor::new()?;
    /// let names = StaticResolver::new();
    /// names.insert_ips("printer.lan", ["192.168.1.9".parse().unwrap()]);
    /// reactor.set_resolver(names);
    /// let ips = reactor.resolve("printer.lan").result().unwrap().unwrap();
    /// assert_eq!(ips, ["192.168.1.9".parse::<std::net::IpAddr>().unwrap()]);
    /// let literal = reactor.resolve("::1").result().unwrap().unwrap();
    /// assert_eq!(literal, ["::1".parse::<std::net::IpAddr>().unwrap()]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn resolve(&self, host: &str) -> Deferred<Vec<IpAddr>> {
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if let Ok(ip) = literal.unwrap_or(host).parse::<IpAddr>() {
            return crate::defer::succeed(vec![ip]);
        }
        self.resolver().resolve(host, 0).then(|addrs| {
            let mut ips: Vec<IpAddr> = Vec::with_capacity(addrs.len());
            for addr in addrs {
                if !ips.contains(&addr.ip()) {
                    ips.push(addr.ip());
                }
            }
            Ok(ips)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_resolver_remembers_only_its_latest_lookups() {
        let _reactor = Reactor::new().unwrap();
        let names = StaticResolver::new();
        for n in 0..LOOKUPS_KEPT + 100 {
            let unknown = names.resolve(&format!("host{n}"), 80).result().unwrap();
            assert!(unknown.is_err());
        }
        let lookups = names.lookups();
        assert_eq!(lookups.len(), LOOKUPS_KEPT);
        assert_eq!(lookups[0], "host100");
        assert_eq!(
            lookups.last().unwrap(),
            &format!("host{}", LOOKUPS_KEPT + 99)
        );
    }
}
