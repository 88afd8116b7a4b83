//! A connection's outgoing bytes: what was written and is not sent yet.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};

/// Whether a failed `sendfile` is the socket's fault (the connection is
/// lost) rather than the file's.
fn is_socket_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

/// Writes of at most this many bytes that arrive behind others are copied
/// into one contiguous chunk instead of being queued one by one.
///
/// A codec that encodes each small message into its own `Bytes` would
/// otherwise cost a queue entry, an iovec and a reference count per
/// message; copying a few hundred bytes is cheaper than all three, and the
/// kernel takes one long iovec faster than many short ones.
const COALESCE_MAX: usize = 512;

/// What an in-place append is given at least, before any burst is known.
const MIN_APPEND: usize = 64;

/// The largest tail a burst starts with, however big the last one was.
const TAIL_MAX_START: usize = 256 * 1024;

/// The most iovecs handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// Queued writes, oldest first, sent with as few system calls as possible.
///
/// The first write of a burst is queued as the `Bytes` it came in (no
/// copy: an echo sends the very buffer it read into). Small writes behind
/// it, and whatever encoders make in place, are appended to `tail`. A
/// `Bytes` queued behind such bytes seals them: they become a
/// [`Chunk::Tail`] that stays in `tail` (no split, no reference count),
/// and `tail` holds the sealed bytes of the queue in order, then the open
/// part, which is logically after every queued chunk.
#[derive(Default)]
pub(crate) struct WriteBuffer {
    chunks: VecDeque<Chunk>,
    tail: BytesMut,
    /// How many bytes at the front of `tail` belong to `Chunk::Tail`
    /// entries of `chunks` (the sum of their lengths); the rest of it is
    /// the open part.
    sealed: usize,
    len: usize,
    /// Bytes appended to the tail since the buffer was last empty, and as
    /// many in the burst before: the tail is freed between bursts, and the
    /// next one starts at the last one's size instead of growing (and
    /// copying) its way there again.
    burst: usize,
    last_burst: usize,
    /// File bytes queued ([`Chunk::File`]): not in `len`, which is memory.
    file_bytes: u64,
}

/// A queued piece of the stream.
enum Chunk {
    /// A write queued as it came.
    Bytes(Bytes),
    /// The next this many bytes of `tail`.
    Tail(usize),
    /// A range of a file, sent from its descriptor with `sendfile(2)`.
    File(FileRange),
}

/// A range of a file waiting in the stream: `Transport::send_file`.
pub(crate) struct FileRange {
    file: File,
    offset: u64,
    end: u64,
    /// Where the reason the file could not be sent is left for the
    /// `Deferred` (the connection is then aborted with the original).
    failure: Rc<RefCell<Option<io::Error>>>,
}

impl FileRange {
    /// The bytes of `file` from `offset` to `end`; a failure to send them
    /// that is the file's fault is stored in `failure`.
    // Only Linux sends files from the buffer; elsewhere they are copied.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn new(
        file: File,
        offset: u64,
        end: u64,
        failure: Rc<RefCell<Option<io::Error>>>,
    ) -> FileRange {
        FileRange {
            file,
            offset,
            end,
            failure,
        }
    }

    fn fail(&self, err: io::Error) -> WriteError {
        *self.failure.borrow_mut() = Some(io::Error::new(err.kind(), err.to_string()));
        WriteError::File(err)
    }
}

/// Where the buffer writes: a socket, which can also take a file's bytes
/// straight from its descriptor.
pub(crate) trait Sink: Write {
    /// Sends up to `len` bytes of `file` from `offset`, as `write` does
    /// bytes: how many went, `WouldBlock` when the socket is full, 0 when
    /// the file ends before `offset`.
    fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize>;
}

/// Why [`WriteBuffer::write_to`] stopped.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The socket failed: the connection is lost.
    Socket(io::Error),
    /// A queued file could not be read, or is shorter than its range: the
    /// peer's stream is broken, and the connection must be aborted.
    File(io::Error),
}

impl WriteBuffer {
    /// Bytes waiting to be sent.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether a file is queued (its bytes are not in [`len`](Self::len)).
    pub(crate) fn has_file(&self) -> bool {
        self.file_bytes > 0
    }

    /// Whether nothing at all is waiting, bytes or files.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.file_bytes == 0
    }

    /// Queues a file's range behind everything written before; the bytes
    /// written after it wait for its last byte.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn push_file(&mut self, range: FileRange) {
        self.file_bytes += range.end - range.offset;
        self.seal_tail();
        self.chunks.push_back(Chunk::File(range));
    }

    /// Queues `data` behind everything written before.
    pub(crate) fn push(&mut self, data: Bytes) {
        if !self.coalesce(&data) {
            self.queue(data);
        }
    }

    /// As [`push`](Self::push), for bytes shared with others (a broadcast):
    /// a small write that is coalesced costs no reference count.
    pub(crate) fn push_shared(&mut self, data: &Bytes) {
        if !self.coalesce(data) {
            self.queue(data.clone());
        }
    }

    /// Copies `data` into the tail if it is small and behind other bytes;
    /// returns whether it did (or `data` is empty).
    fn coalesce(&mut self, data: &[u8]) -> bool {
        if data.is_empty() {
            return true;
        }
        if data.len() > COALESCE_MAX || self.len == 0 {
            return false;
        }
        self.len += data.len();
        self.reserve_tail(data.len());
        self.tail.extend_from_slice(data);
        self.burst += data.len();
        true
    }

    /// Queues `data` as a chunk of its own.
    fn queue(&mut self, data: Bytes) {
        self.len += data.len();
        self.seal_tail();
        self.chunks.push_back(Chunk::Bytes(data));
    }

    /// Lets `fill` append bytes in place, behind everything queued, and
    /// queues the `Bytes` it returns (if any) behind those; returns how
    /// many bytes it added in all. Should `fill` panic, what it appended is
    /// taken back, so no half-made message is ever sent.
    pub(crate) fn append_with(
        &mut self,
        fill: &mut dyn FnMut(&mut BytesMut) -> Option<Bytes>,
    ) -> usize {
        /// Cuts the tail back to where it was unless disarmed.
        struct Undo<'a> {
            tail: &'a mut BytesMut,
            before: usize,
            armed: bool,
        }
        impl Drop for Undo<'_> {
            fn drop(&mut self) {
                if self.armed {
                    self.tail.truncate(self.before);
                }
            }
        }
        self.reserve_tail(MIN_APPEND);
        let before = self.tail.len();
        let mut undo = Undo {
            tail: &mut self.tail,
            before,
            armed: true,
        };
        let body = fill(undo.tail);
        undo.armed = false;
        // A filler must only append; one that cut into queued bytes would
        // corrupt the stream, so treat that as the bug it is.
        let after = undo.tail.len();
        drop(undo);
        assert!(after >= before, "a write_with filler removed queued bytes");
        self.len += after - before;
        self.burst += after - before;
        match body {
            Some(body) => {
                let n = body.len();
                self.push(body);
                after - before + n
            }
            None => after - before,
        }
    }

    /// Drops everything queued (the connection is gone).
    pub(crate) fn clear(&mut self) {
        *self = WriteBuffer::default();
    }

    /// Queues the open part of the tail, so nothing can be appended in
    /// front of a later chunk. The bytes stay where they are.
    fn seal_tail(&mut self) {
        let open = self.tail.len() - self.sealed;
        if open > 0 {
            self.chunks.push_back(Chunk::Tail(open));
            self.sealed = self.tail.len();
        }
    }

    /// Writes as much as `sink` takes now, at most about `limit` bytes:
    /// one `write` for a single chunk, `writev` for several, `sendfile`
    /// for a file. Returns the bytes written (a file's included); stops at
    /// the first short write or `WouldBlock`.
    pub(crate) fn write_to(
        &mut self,
        mut sink: impl Sink,
        limit: usize,
    ) -> Result<usize, WriteError> {
        let mut written = 0;
        while !self.is_empty() && written < limit {
            if let Some(Chunk::File(range)) = self.chunks.front_mut() {
                let want = (range.end - range.offset).min((limit - written) as u64) as usize;
                match sink.send_file(&range.file, range.offset, want) {
                    Ok(0) => {
                        let short = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "the file ended at byte {} of a range ending at {}",
                                range.offset, range.end
                            ),
                        );
                        return Err(range.fail(short));
                    }
                    Ok(n) => {
                        range.offset += n as u64;
                        self.file_bytes -= n as u64;
                        written += n;
                        if range.offset == range.end {
                            self.chunks.pop_front();
                        } else if n < want {
                            break;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) if is_socket_error(&err) => return Err(WriteError::Socket(err)),
                    Err(err) => return Err(range.fail(err)),
                }
                continue;
            }
            // The tail goes out as the last iovec, without being split off
            // into a `Bytes` of its own; a file ends the gathering, as
            // what follows it waits for it.
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            let mut offered = 0;
            let tail = &self.tail[..];
            let mut at = 0;
            let mut reached_file = false;
            for chunk in &self.chunks {
                if count == MAX_IOVECS {
                    break;
                }
                let piece = match chunk {
                    Chunk::Bytes(bytes) => &bytes[..],
                    Chunk::Tail(len) => {
                        at += len;
                        &tail[at - len..at]
                    }
                    Chunk::File(_) => {
                        reached_file = true;
                        break;
                    }
                };
                iov[count] = IoSlice::new(piece);
                offered += piece.len();
                count += 1;
            }
            if !reached_file && count < MAX_IOVECS && tail.len() > self.sealed {
                iov[count] = IoSlice::new(&tail[self.sealed..]);
                offered += tail.len() - self.sealed;
                count += 1;
            }
            let result = if count == 1 {
                sink.write(&iov[0])
            } else {
                sink.write_vectored(&iov[..count])
            };
            match result {
                Ok(0) => return Err(WriteError::Socket(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.consume(n);
                    written += n;
                    if n < offered {
                        // A short write: the socket is full, and another
                        // write would only return WouldBlock.
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(WriteError::Socket(err)),
            }
        }
        if self.len == 0 {
            // Idle connections keep no buffer. (Files still queued hold no
            // bytes of the tail.)
            self.tail = BytesMut::new();
            self.sealed = 0;
            self.last_burst = self.burst.min(TAIL_MAX_START);
            self.burst = 0;
        }
        Ok(written)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(Chunk::Bytes(front)) if n >= front.len() => {
                    n -= front.len();
                    self.chunks.pop_front();
                }
                Some(Chunk::Bytes(front)) => {
                    front.advance(n);
                    n = 0;
                }
                Some(Chunk::File(_)) => {
                    unreachable!("write_to offers no bytes behind a file")
                }
                Some(Chunk::Tail(len)) => {
                    let take = n.min(*len);
                    *len -= take;
                    if *len == 0 {
                        self.chunks.pop_front();
                    }
                    self.tail.advance(take);
                    self.sealed -= take;
                    n -= take;
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        if self.tail.is_empty() {
            // Reuse the tail's whole capacity from its start again.
            self.tail.clear();
        }
    }

    /// Gives an unallocated tail the size of the last burst before the
    /// first append, so a burst of small writes does not grow it a few bytes
    /// (and copies) at a time; past that it grows as any `BytesMut`.
    fn reserve_tail(&mut self, additional: usize) {
        if self.tail.capacity() == 0 {
            self.tail.reserve(additional.max(self.last_burst));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `room` bytes per call, then `WouldBlock`.
    struct Sink {
        got: Vec<u8>,
        room: usize,
        calls: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.room);
                self.got.extend_from_slice(&b[..take]);
                self.room -= take;
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl super::Sink for &mut Sink {
        fn send_file(&mut self, file: &File, offset: u64, len: usize) -> io::Result<usize> {
            use std::os::unix::fs::FileExt;
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut piece = vec![0; len.min(self.room)];
            let n = file.read_at(&mut piece, offset)?;
            self.got.extend_from_slice(&piece[..n]);
            self.room -= n;
            Ok(n)
        }
    }

    /// A file holding `contents`, already unlinked.
    fn file_with(contents: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!(
            "twill-write-buffer-{}-{}",
            std::process::id(),
            contents.len()
        ));
        std::fs::write(&path, contents).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    #[test]
    fn files_keep_their_place_between_writes_through_short_writes() {
        let contents: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut buf = WriteBuffer::default();
        let failure = Rc::new(RefCell::new(None));
        buf.push(Bytes::from_static(b"head"));
        buf.push(Bytes::from_static(b"-small"));
        buf.push_file(FileRange::new(
            file_with(&contents),
            100,
            4100,
            failure.clone(),
        ));
        // Small writes behind the file must not join the tail before it.
        buf.push(Bytes::from_static(b"-after"));
        buf.push(Bytes::from(vec![b'B'; COALESCE_MAX + 1]));
        buf.push_file(FileRange::new(file_with(&contents), 0, 10, failure.clone()));
        buf.push(Bytes::from_static(b"-end"));
        assert!(buf.has_file());
        assert_eq!(buf.len(), 4 + 6 + 6 + COALESCE_MAX + 1 + 4);
        let mut want = b"head-small".to_vec();
        want.extend_from_slice(&contents[100..4100]);
        want.extend_from_slice(b"-after");
        want.extend_from_slice(&[b'B'; COALESCE_MAX + 1]);
        want.extend_from_slice(&contents[..10]);
        want.extend_from_slice(b"-end");
        let mut sink = Sink {
            got: Vec::new(),
            room: 0,
            calls: 0,
        };
        let mut total = 0;
        while !buf.is_empty() {
            sink.room = 333;
            total += buf.write_to(&mut sink, usize::MAX).unwrap();
        }
        assert_eq!(total, want.len());
        assert!(sink.got == want);
        assert!(!buf.has_file());
        assert!(failure.borrow().is_none());
    }

    #[test]
    fn a_file_shorter_than_its_range_is_the_files_fault() {
        let mut buf = WriteBuffer::default();
        let failure = Rc::new(RefCell::new(None));
        buf.push_file(FileRange::new(
            file_with(b"0123456789"),
            5,
            50,
            failure.clone(),
        ));
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
            calls: 0,
        };
        // A short send looks like a full socket; the next one finds the end.
        assert_eq!(buf.write_to(&mut sink, usize::MAX).unwrap(), 5);
        match buf.write_to(&mut sink, usize::MAX) {
            Err(WriteError::File(err)) => assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
        assert_eq!(sink.got, b"56789");
        let kept = failure.borrow_mut().take().expect("kept for the Deferred");
        assert_eq!(kept.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn keeps_order_across_small_and_large_writes() {
        let mut buf = WriteBuffer::default();
        let big = Bytes::from(vec![b'L'; COALESCE_MAX + 1]);
        buf.push(Bytes::from_static(b"first"));
        buf.push(Bytes::from_static(b"-a"));
        buf.push(big.clone());
        buf.push(Bytes::from_static(b"-b"));
        buf.push(Bytes::new());
        buf.push(Bytes::from_static(b"-c"));
        let mut want = b"first-a".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"-b-c");
        assert_eq!(buf.len(), want.len());
        // Small writes behind the first are coalesced: four chunks, not six.
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
            calls: 0,
        };
        assert_eq!(buf.write_to(&mut sink, usize::MAX).unwrap(), want.len());
        assert_eq!(sink.got, want);
        assert_eq!(sink.calls, 1);
        assert_eq!(buf.len(), 0);
    }

    #[test]
    fn in_place_appends_keep_their_place_and_a_panic_takes_them_back() {
        let mut buf = WriteBuffer::default();
        buf.push(Bytes::from_static(b"a"));
        assert_eq!(
            buf.append_with(&mut |b| {
                b.extend_from_slice(b"bc");
                None
            }),
            2
        );
        buf.push(Bytes::from(vec![b'd'; COALESCE_MAX + 1]));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            buf.append_with(&mut |b| {
                b.extend_from_slice(b"half a message");
                panic!("encoder bug");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(
            buf.append_with(&mut |b| {
                b.extend_from_slice(b"e");
                None
            }),
            1
        );
        let mut sink = Sink {
            got: Vec::new(),
            room: usize::MAX,
            calls: 0,
        };
        let n = buf.write_to(&mut sink, usize::MAX).unwrap();
        let mut want = b"abc".to_vec();
        want.extend_from_slice(&[b'd'; COALESCE_MAX + 1]);
        want.push(b'e');
        assert_eq!(n, want.len());
        assert_eq!(sink.got, want);
    }

    #[test]
    fn short_writes_resume_where_they_stopped() {
        let mut buf = WriteBuffer::default();
        let mut want = Vec::new();
        for i in 0..200u32 {
            let chunk = Bytes::from(format!("<{i}>").repeat(i as usize % 7 + 1));
            want.extend_from_slice(&chunk);
            buf.push(chunk);
        }
        let mut sink = Sink {
            got: Vec::new(),
            room: 0,
            calls: 0,
        };
        while !buf.is_empty() {
            sink.room = 13;
            let before = buf.len();
            let n = buf.write_to(&mut sink, usize::MAX).unwrap();
            assert_eq!(before - buf.len(), n);
            // More writes may arrive between flushes.
            if sink.got.len() < 100 {
                let more = Bytes::from_static(b"[more]");
                want.extend_from_slice(&more);
                buf.push(more);
            }
        }
        assert_eq!(sink.got, want);
    }

    #[test]
    fn headers_and_bodies_survive_short_writes() {
        // Encoder-style traffic: a small header appended in place, then a
        // large body queued as it is, over and over, sent a few bytes at a
        // time so every chunk (sealed tail parts included) is cut.
        let mut buf = WriteBuffer::default();
        let mut want = Vec::new();
        let mut sink = Sink {
            got: Vec::new(),
            room: 0,
            calls: 0,
        };
        for i in 0..300usize {
            let body = Bytes::from(vec![(i % 251) as u8; COALESCE_MAX + 1 + i % 5]);
            let header = (body.len() as u32).to_be_bytes();
            if i % 2 == 0 {
                assert_eq!(
                    buf.append_with(&mut |b| {
                        b.extend_from_slice(&header);
                        None
                    }),
                    4
                );
                buf.push(body.clone());
            } else {
                let n = buf.append_with(&mut |b| {
                    b.extend_from_slice(&header);
                    Some(body.clone())
                });
                assert_eq!(n, 4 + body.len());
            }
            want.extend_from_slice(&header);
            want.extend_from_slice(&body);
            if i % 3 == 0 {
                sink.room = 7 + i * 13 % 1500;
                let before = buf.len();
                let n = buf.write_to(&mut sink, usize::MAX).unwrap();
                assert_eq!(before - buf.len(), n);
            }
        }
        while !buf.is_empty() {
            sink.room = 997;
            buf.write_to(&mut sink, usize::MAX).unwrap();
        }
        assert_eq!(sink.got, want);
    }
}
