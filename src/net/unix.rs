//! Unix domain sockets: [`Reactor::listen_unix`] and
//! [`Reactor::connect_unix`]. Everything a TCP connection does works the
//! same here: the protocol, the transport, watermarks, half-close, TLS.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use super::address::UnixAddress;
use super::connector::{Connector, Destination};
use super::listener::{self, Here, ListeningPort, Serve};
use super::tcp::DEFAULT_BACKLOG;
use crate::protocol::{ClientFactory, Factory};
use crate::reactor::{Reactor, DEFAULT_CONNECT_TIMEOUT};

/// The file mode of a new socket file, as Twisted's `listenUNIX` (0o666):
/// who may connect is the directory's business.
pub const DEFAULT_UNIX_MODE: u32 = 0o666;

/// The credentials of the process at the other end of a Unix socket, as
/// the kernel recorded them when it connected (`SO_PEERCRED`): from
/// [`Transport::peer_credentials`](crate::Transport::peer_credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Its process id.
    pub pid: u32,
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
}

impl Reactor {
    /// Listens on a Unix domain socket and serves each connection with a
    /// protocol from `factory`: Twisted's `listenUNIX`. `address` is a
    /// path, or on Linux `@name` for the abstract namespace (no file).
    ///
    /// A socket file is created with `mode` (e.g. [`DEFAULT_UNIX_MODE`])
    /// and removed on [`stop_listening`](ListeningPort::stop_listening).
    /// Beside it, `PATH.lock` is held (an advisory `flock`, released by
    /// the kernel if the process dies) for as long as the port listens, so
    /// a second server on the same path fails with `AddrInUse` instead of
    /// stealing the socket. A socket file left by a server that crashed is
    /// replaced, but only when nobody answers on it; a file that is not a
    /// socket is never removed.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a path too long for the OS (over
    /// [`MAX_UNIX_PATH`](super::MAX_UNIX_PATH) bytes); `AddrInUse` when
    /// another server listens there; any error from the file system or
    /// the socket calls.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use twill::net::DEFAULT_UNIX_MODE;
    /// use twill::{Protocol, Reactor};
    ///
    /// struct Discard;
    /// impl Protocol for Discard {
    ///     fn data_received(&mut self, _: Bytes) {}
    /// }
    ///
    /// let dir = std::env::temp_dir().join(format!("twill-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("discard.sock");
    /// let reactor = Reactor::new()?;
    /// let port = reactor.listen_unix(&path, DEFAULT_UNIX_MODE, |_peer| Discard)?;
    /// assert!(path.exists());
    /// port.stop_listening();
    /// assert!(!path.exists());
    /// # std::fs::remove_dir(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen_unix(
        &self,
        address: impl Into<UnixAddress>,
        mode: u32,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        self.listen_unix_with(address.into(), mode, DEFAULT_BACKLOG, true, factory)
    }

    /// [`listen_unix`](Self::listen_unix) with a backlog, and the lock file
    /// optional (`lockfile: false` keeps only the check that nobody
    /// answers on a file before it is replaced).
    pub(crate) fn listen_unix_with(
        &self,
        address: UnixAddress,
        mode: u32,
        backlog: i32,
        lockfile: bool,
        factory: impl Factory,
    ) -> io::Result<ListeningPort> {
        let serve = Box::new(Here(Box::new(factory)));
        self.listen_unix_serving(address, mode, backlog, lockfile, serve)
    }

    /// Listens as [`listen_unix_with`](Self::listen_unix_with) does, doing
    /// with each accepted connection what `serve` does.
    pub(crate) fn listen_unix_serving(
        &self,
        address: UnixAddress,
        mode: u32,
        backlog: i32,
        lockfile: bool,
        serve: Box<dyn Serve>,
    ) -> io::Result<ListeningPort> {
        let target = address.to_sock_addr()?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        let on_close: Option<Box<dyn FnOnce()>> = match &address {
            UnixAddress::Path(path) => {
                let lock = if lockfile {
                    Some(Lock::take(path)?)
                } else {
                    None
                };
                remove_if_stale(path)?;
                socket.bind(&target)?;
                let owned = SocketFile {
                    path: path.clone(),
                    _lock: lock,
                };
                fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
                Some(Box::new(move || drop(owned)))
            }
            UnixAddress::Abstract(_) => {
                socket.bind(&target)?;
                None
            }
            UnixAddress::Unnamed => unreachable!("to_sock_addr refuses an unnamed address"),
        };
        socket.listen(backlog)?;
        socket.set_nonblocking(true)?;
        listener::listen_serving(self.core(), socket, serve, on_close)
    }

    /// Connects to a Unix domain socket with a 30 s timeout: Twisted's
    /// `connectUNIX`. See [`connect_unix_with_timeout`](Self::connect_unix_with_timeout).
    ///
    /// # Errors
    ///
    /// As `connect_unix_with_timeout`.
    pub fn connect_unix(
        &self,
        address: impl Into<UnixAddress>,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        self.connect_unix_with_timeout(address, DEFAULT_CONNECT_TIMEOUT, factory)
    }

    /// Connects to the Unix domain socket at `address` (a path, or `@name`
    /// on Linux), giving up after `timeout`; the attempt is reported to
    /// `factory` as for [`connect_tcp`](Self::connect_tcp).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an address the OS cannot take (too long, empty,
    /// unnamed). Failures to connect (no such file, refused) are reported
    /// to the factory.
    pub fn connect_unix_with_timeout(
        &self,
        address: impl Into<UnixAddress>,
        timeout: Duration,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        self.connect_unix_with(address.into(), timeout, false, factory)
    }

    /// [`connect_unix_with_timeout`](Self::connect_unix_with_timeout); with
    /// `lockfile`, a socket whose `PATH.lock` no live server holds is
    /// refused (`ConnectionRefused`, reported to the factory) instead of
    /// connected to.
    pub(crate) fn connect_unix_with(
        &self,
        address: UnixAddress,
        timeout: Duration,
        lockfile: bool,
        factory: impl ClientFactory,
    ) -> io::Result<Connector> {
        address.to_sock_addr()?;
        let connector = Connector::new(
            self.core(),
            Destination::Unix(address),
            timeout,
            Box::new(factory),
        );
        if lockfile {
            connector.check_lock();
        }
        connector.connect();
        Ok(connector)
    }
}

/// Removes the socket file at `path` if it was left by a server that is
/// gone: it is a socket and connecting to it is refused.
fn remove_if_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    // Without blocking: a live server that is slow to accept must not
    // hold this thread, and it is live all the same.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => Err(in_use(path)),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Err(in_use(path)),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing the stale socket file {}", path.display());
            fs::remove_file(path)
        }
        Err(err) => Err(err),
    }
}

fn in_use(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("another process listens on {}", path.display()),
    )
}

/// A listening port's socket file, removed when the port stops.
struct SocketFile {
    path: PathBuf,
    _lock: Option<Lock>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                log::warn!("could not remove {}: {err}", self.path.display());
            }
        }
    }
}

/// `PATH.lock`, held with `flock` while a port listens on `PATH`: the
/// kernel drops the lock when the process dies, so a crashed server never
/// leaves a lock that blocks the next one (Twisted's `wantPID` lock does
/// the same job with a pid file).
struct Lock {
    path: PathBuf,
    _file: File,
}

impl Lock {
    fn take(socket_path: &Path) -> io::Result<Lock> {
        let path = lock_path(socket_path);
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)?;
            if !try_flock(&file, libc::LOCK_EX)? {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use: another server holds {}",
                        socket_path.display(),
                        path.display()
                    ),
                ));
            }
            // The server we waited on may have removed the file between our
            // open and our lock: then we hold a lock on nothing anyone else
            // can see, and must take the file that is there now.
            if same_file(&file, &path)? {
                return Ok(Lock { path, _file: file });
            }
        }
    }
}

fn lock_path(socket_path: &Path) -> PathBuf {
    let mut name = socket_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes `file`'s `flock` without waiting: false when another holds it.
fn try_flock(file: &File, operation: libc::c_int) -> io::Result<bool> {
    // SAFETY: `flock` on a descriptor that `file` owns and keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        return Ok(false);
    }
    Err(err)
}

fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether a server holds the lock beside the socket at `socket_path`
/// (Twisted's client-side `checkPID`): a client that asks for it refuses
/// to connect to a socket no live server owns.
pub(crate) fn lock_is_held(socket_path: &Path) -> io::Result<bool> {
    let file = match File::open(lock_path(socket_path)) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    Ok(!try_flock(&file, libc::LOCK_SH)?)
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked, so no other server can have taken it.
        let _ = fs::remove_file(&self.path);
    }
}

/// The credentials of the process at the other end of a connected Unix
/// socket.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn peer_credentials(socket: &impl AsRawFd) -> io::Result<PeerCredentials> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a `ucred` and `len` its size, as SO_PEERCRED
    // requires; the kernel writes at most `len` bytes.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCredentials {
        pid: cred.pid as u32,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The credentials of the process at the other end of a connected Unix
/// socket (no pid on this platform: `getpeereid` gives the ids only).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn peer_credentials(socket: &impl AsRawFd) -> io::Result<PeerCredentials> {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: both out-pointers point to live `uid_t`/`gid_t` values.
    if unsafe { libc::getpeereid(socket.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCredentials { pid: 0, uid, gid })
}
