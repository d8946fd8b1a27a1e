//! The HTTP/1.1 server of `edgebuf receive`: bounded in connections, threads and memory.
//!
//! One thread (the caller of [`serve`]) owns every connection while it is idle or while its
//! request arrives: it waits on all of them with poll(2), reads what is there without blocking,
//! and parses the head (httparse) and the body (Content-Length or chunked). Only a complete
//! request goes to one of [`WORKERS`] threads, which runs the handler, writes the answer and
//! hands the connection back for its next request (keep-alive). So a client that stalls holds
//! a connection slot and its buffer, never a thread, and its timeout closes it.
//!
//! Limits: at most [`MAX_CONNECTIONS`] connections (past that the longest idle one is closed to
//! make room, or the new one is answered 503); the head within [`HEAD_MAX`] bytes and
//! [`HEADER_TIMEOUT`]; no more than [`READ_TIMEOUT`] without a byte while a body arrives, and
//! the whole request within [`REQUEST_TIMEOUT`]; a body over `max_body` is answered 413 from
//! its Content-Length, before it is read, or as soon as a chunked body passes it. Bodies
//! larger than [`SMALL_BODY`] draw on one budget of `max_body` bytes (a Content-Length body
//! reserves all of it before its first byte is read), so that the bodies held at once, read or
//! being handled, stay within about `max_body` plus the small ones.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Threads that run the handler.
pub const WORKERS: usize = 4;
/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Largest request head (request line and headers).
pub const HEAD_MAX: usize = 64 << 10;
/// From the first byte of a request to the end of its head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while a body arrives.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// From the end of a request's head to the end of its body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// An idle keep-alive connection is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bodies up to this size do not draw on the budget.
pub const SMALL_BODY: u64 = 64 << 10;
/// After a refusal, how long the rest of the request is read and dropped (so the client reads
/// the answer instead of a reset).
const LINGER: Duration = Duration::from_secs(2);
/// Writing one answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const READ_CHUNK: usize = 64 << 10;

/// A complete request.
pub struct Request {
    pub method: String,
    pub path: String,
    pub content_encoding: Option<String>,
    pub body: Vec<u8>,
}

/// What the server needs from the application.
pub trait Handler: Send + Sync + 'static {
    /// Answers a request: (status, JSON body).
    fn handle(&self, req: &Request) -> (u16, String);
    /// Told of a request the server answered itself (413, a malformed body, a timeout).
    fn refused(&self, method: &str, path: &str, code: u16, body: &str);
}

/// Serves `listener` until the process exits; returns only on an error of poll(2).
pub fn serve(listener: TcpListener, max_body: u64, handler: Arc<dyn Handler>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (back_tx, back_rx) = mpsc::channel::<Option<Conn>>();
    for _ in 0..WORKERS {
        let (rx, back, h) = (Arc::clone(&job_rx), back_tx.clone(), Arc::clone(&handler));
        let wake = wake_tx.try_clone()?;
        std::thread::spawn(move || work(&rx, &back, &wake, &*h));
    }
    let mut p = Poller {
        conns: Vec::new(),
        busy: 0,
        budget: Arc::new(Budget {
            used: AtomicU64::new(0),
            limit: max_body.max(SMALL_BODY),
        }),
        max_body,
        handler,
        jobs: job_tx,
    };
    let mut accept_paused_until: Option<Instant> = None;
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let now = Instant::now();
        let accepting = accept_paused_until.is_none_or(|t| now >= t);
        let mut fds = vec![
            pollfd(wake_rx.as_raw_fd()),
            pollfd(if accepting { listener.as_raw_fd() } else { -1 }),
        ];
        let watched: Vec<usize> = (0..p.conns.len()).filter(|&i| p.wants_read(i)).collect();
        fds.extend(
            watched
                .iter()
                .map(|&i| pollfd(p.conns[i].stream.as_raw_fd())),
        );
        // SAFETY: `fds` is a valid, initialised array of pollfd of the length given.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let ready = |f: &libc::pollfd| f.revents != 0;
        if ready(&fds[0]) {
            let mut b = [0u8; 64];
            while matches!((&wake_rx).read(&mut b), Ok(k) if k > 0) {}
        }
        // Connections that workers are done with; a kept one may already hold its next request.
        while let Ok(back) = back_rx.try_recv() {
            p.busy -= 1;
            if let Some(mut c) = back {
                c.since = Instant::now();
                p.conns.push(c);
                let i = p.conns.len() - 1;
                p.advance(i);
            }
        }
        // Reads (indices stay valid: connections are only removed by the sweep below).
        for (k, &i) in watched.iter().enumerate() {
            if ready(&fds[k + 2]) {
                p.read(i, &mut chunk);
            }
        }
        p.sweep(Instant::now());
        if accepting && ready(&fds[1]) {
            loop {
                match listener.accept() {
                    Ok((s, _)) => p.admit(s),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        // Out of descriptors, most likely: try again a little later rather
                        // than spin on a listener that stays readable.
                        accept_paused_until = Some(Instant::now() + Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Bytes of bodies held at once (past SMALL_BODY each).
struct Budget {
    used: AtomicU64,
    limit: u64,
}

/// A part of the budget, given back when dropped.
struct Reservation {
    n: u64,
    budget: Arc<Budget>,
}

impl Budget {
    fn try_add(&self, n: u64) -> bool {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            if cur + n > self.limit {
                return false;
            }
            match self
                .used
                .compare_exchange(cur, cur + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }

    fn try_reserve(self: &Arc<Self>, n: u64) -> Option<Reservation> {
        self.try_add(n).then(|| Reservation {
            n,
            budget: Arc::clone(self),
        })
    }
}

impl Reservation {
    fn grow(&mut self, n: u64) -> bool {
        let ok = self.budget.try_add(n);
        if ok {
            self.n += n;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

struct Conn {
    stream: TcpStream,
    /// Received and not yet consumed (the head, or body bytes not yet framed).
    buf: Vec<u8>,
    state: State,
    /// When the current state began (for its timeout).
    since: Instant,
    last_read: Instant,
}

enum State {
    /// Between requests.
    Idle,
    /// The head is arriving; since its first byte.
    Head,
    Body(Box<Incoming>),
    /// Complete: goes to a worker at the next sweep.
    Ready(Box<Incoming>),
    /// Refused: the rest is read and dropped until the peer closes or LINGER passes.
    Linger,
    /// To be closed at the next sweep.
    Closed,
}

struct Incoming {
    req: Request,
    keep_alive: bool,
    head_only: bool,
    framing: Framing,
    reservation: Option<Reservation>,
    /// A Content-Length body larger than SMALL_BODY waits for its reservation before being
    /// read.
    needs: u64,
    continue_pending: bool,
    started: Instant,
    /// Not read for now: its body waits for the budget (no read timeout meanwhile).
    blocked: bool,
}

enum Framing {
    Length(u64),
    Chunked(Chunked),
}

struct Job {
    conn: Conn,
    req: Request,
    keep_alive: bool,
    head_only: bool,
    _reservation: Option<Reservation>,
}

struct Poller {
    conns: Vec<Conn>,
    /// Connections with a worker.
    busy: usize,
    budget: Arc<Budget>,
    max_body: u64,
    handler: Arc<dyn Handler>,
    jobs: mpsc::Sender<Job>,
}

/// What parsing the buffered bytes led to.
enum Step {
    More,
    Ready,
    Refuse(u16, String),
}

impl Poller {
    fn admit(&mut self, s: TcpStream) {
        if s.set_nonblocking(true).is_err() {
            return;
        }
        let _ = s.set_nodelay(true);
        if self.conns.len() + self.busy >= MAX_CONNECTIONS {
            // Make room by closing the connection idle the longest; if none is idle, the new
            // one is refused.
            let oldest = (0..self.conns.len())
                .filter(|&i| {
                    matches!(self.conns[i].state, State::Idle) && self.conns[i].buf.is_empty()
                })
                .min_by_key(|&i| self.conns[i].since);
            match oldest {
                Some(i) => {
                    self.conns.swap_remove(i);
                }
                None => {
                    let _ = (&s).write_all(&response(
                        503,
                        &error_body("too many connections"),
                        false,
                        false,
                    ));
                    return;
                }
            }
        }
        let now = Instant::now();
        self.conns.push(Conn {
            stream: s,
            buf: Vec::new(),
            state: State::Idle,
            since: now,
            last_read: now,
        });
    }

    /// Whether connection `i` is to be read now; takes the budget its body needs first.
    fn wants_read(&mut self, i: usize) -> bool {
        let ok = self.may_read(i);
        let c = &mut self.conns[i];
        if let State::Body(inc) = &mut c.state {
            if inc.blocked && ok {
                // The read timeout starts again once it is read again.
                c.last_read = Instant::now();
            }
            inc.blocked = !ok;
        }
        ok
    }

    fn may_read(&mut self, i: usize) -> bool {
        let budget = Arc::clone(&self.budget);
        let max_body = self.max_body;
        let c = &mut self.conns[i];
        let State::Body(inc) = &mut c.state else {
            return !matches!(c.state, State::Ready(_));
        };
        if inc.needs > 0 && inc.reservation.is_none() {
            match budget.try_reserve(inc.needs) {
                Some(r) => inc.reservation = Some(r),
                None => return false,
            }
            // Allocated once (not doubled as it grows); if that fails it grows as it comes.
            let _ = inc.req.body.try_reserve_exact(inc.needs as usize);
            // Body bytes that came with the head wait in `buf`.
            self.advance(i);
            return self.may_read(i);
        }
        if let Framing::Chunked(_) = inc.framing {
            // A chunked body reserves as it grows, ahead of what it holds by at least a read.
            // Never more than the largest body it may become, so it always fits the budget.
            let most = max_body.saturating_sub(SMALL_BODY);
            let needed = (inc.req.body.len() as u64 + 2 * READ_CHUNK as u64)
                .saturating_sub(SMALL_BODY)
                .min(most);
            let r = inc.reservation.get_or_insert_with(|| Reservation {
                n: 0,
                budget: Arc::clone(&budget),
            });
            if needed > r.n && !r.grow((needed + (1 << 20)).min(most) - r.n) {
                return false;
            }
        }
        if inc.continue_pending {
            inc.continue_pending = false;
            let _ = (&c.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        true
    }

    fn read(&mut self, i: usize, chunk: &mut [u8]) {
        let c = &mut self.conns[i];
        match (&c.stream).read(chunk) {
            Ok(0) => {
                // The peer is done (half a request is not answered).
                c.state = State::Closed;
            }
            Ok(n) => {
                c.last_read = Instant::now();
                if matches!(c.state, State::Linger | State::Closed) {
                    return;
                }
                c.buf.extend_from_slice(&chunk[..n]);
                self.advance(i);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                c.state = State::Closed;
            }
        }
    }

    /// Parses what connection `i` holds: a complete request is marked Ready (the sweep hands it
    /// to a worker, so that indices stay valid until then), a bad one is refused.
    fn advance(&mut self, i: usize) {
        match self.step(i) {
            Step::More => {}
            Step::Ready => {
                let c = &mut self.conns[i];
                if let State::Body(inc) = std::mem::replace(&mut c.state, State::Idle) {
                    c.state = State::Ready(inc);
                }
            }
            Step::Refuse(code, msg) => self.refuse(i, code, &msg),
        }
    }

    fn step(&mut self, i: usize) -> Step {
        let max_body = self.max_body;
        let c = &mut self.conns[i];
        if matches!(c.state, State::Idle) {
            // Blank lines between requests are allowed.
            let blank = c
                .buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            c.buf.drain(..blank);
            if c.buf.is_empty() {
                return Step::More;
            }
            c.state = State::Head;
            c.since = Instant::now();
        }
        if matches!(c.state, State::Head) {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Request::new(&mut headers);
            let len = match r.parse(&c.buf) {
                Ok(httparse::Status::Partial) if c.buf.len() > HEAD_MAX => {
                    return Step::Refuse(431, "the request head is too large".into())
                }
                Ok(httparse::Status::Partial) => return Step::More,
                Ok(httparse::Status::Complete(n)) => n,
                Err(httparse::Error::TooManyHeaders) => {
                    return Step::Refuse(431, "too many headers".into())
                }
                Err(e) => return Step::Refuse(400, format!("a malformed request: {e}")),
            };
            let inc = match incoming(&r, max_body) {
                Ok(inc) => inc,
                Err((code, msg)) => {
                    // Counted as a request the server answered itself.
                    let (m, p) = (
                        r.method.unwrap_or("").to_string(),
                        r.path.unwrap_or("").to_string(),
                    );
                    let body = error_body(&msg);
                    self.handler.refused(&m, &p, code, &body);
                    c.buf.clear();
                    write_refusal(c, code, &body);
                    return Step::More;
                }
            };
            c.buf.drain(..len);
            c.state = State::Body(Box::new(inc));
            c.last_read = Instant::now();
        }
        let State::Body(inc) = &mut c.state else {
            return Step::More;
        };
        if inc.needs > 0 && inc.reservation.is_none() {
            return Step::More;
        }
        let done = match &mut inc.framing {
            Framing::Length(left) => {
                let k = (*left).min(c.buf.len() as u64) as usize;
                inc.req.body.extend_from_slice(&c.buf[..k]);
                c.buf.drain(..k);
                *left -= k as u64;
                *left == 0
            }
            Framing::Chunked(ch) => match ch.feed(&mut c.buf, &mut inc.req.body, max_body) {
                Ok(done) => done,
                Err((code, msg)) => {
                    let body = error_body(&msg);
                    self.handler
                        .refused(&inc.req.method, &inc.req.path, code, &body);
                    c.buf.clear();
                    write_refusal(c, code, &body);
                    return Step::More;
                }
            },
        };
        if done {
            Step::Ready
        } else {
            Step::More
        }
    }

    /// Answers `code` and stops reading requests on connection `i`.
    fn refuse(&mut self, i: usize, code: u16, msg: &str) {
        let c = &mut self.conns[i];
        c.buf.clear();
        write_refusal(c, code, &error_body(msg));
    }

    /// Timeouts; closes connections that are done.
    fn sweep(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            let expired = match &c.state {
                State::Ready(_) => {
                    let mut c = self.conns.swap_remove(i);
                    if let State::Ready(inc) = std::mem::replace(&mut c.state, State::Idle) {
                        c.since = now;
                        self.busy += 1;
                        let job = Job {
                            conn: c,
                            req: inc.req,
                            keep_alive: inc.keep_alive,
                            head_only: inc.head_only,
                            _reservation: inc.reservation,
                        };
                        if self.jobs.send(job).is_err() {
                            self.busy -= 1;
                        }
                    }
                    continue;
                }
                State::Idle => now >= c.since + IDLE_TIMEOUT,
                State::Linger => now >= c.since + LINGER,
                State::Closed => true,
                State::Head => {
                    if now >= c.since + HEADER_TIMEOUT {
                        c.buf.clear();
                        write_refusal(
                            c,
                            408,
                            &error_body("the request head did not arrive in time"),
                        );
                    }
                    false
                }
                State::Body(inc) => {
                    let waiting = inc.blocked;
                    if now >= inc.started + REQUEST_TIMEOUT {
                        let (code, msg) = if waiting {
                            (503, "busy with other large bodies; try again")
                        } else {
                            (408, "the request did not arrive in time")
                        };
                        let (m, p) = (inc.req.method.clone(), inc.req.path.clone());
                        let body = error_body(msg);
                        self.handler.refused(&m, &p, code, &body);
                        c.buf.clear();
                        write_refusal(c, code, &body);
                    } else if !waiting && now >= c.last_read + READ_TIMEOUT {
                        let (m, p) = (inc.req.method.clone(), inc.req.path.clone());
                        let body = error_body("the body stopped arriving");
                        self.handler.refused(&m, &p, 408, &body);
                        c.buf.clear();
                        write_refusal(c, 408, &body);
                    }
                    false
                }
            };
            if expired {
                self.conns.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}

/// Writes a refusal without blocking (it is small: it fits the socket's buffer), then reads
/// and drops whatever else comes for a while before closing.
fn write_refusal(c: &mut Conn, code: u16, body: &str) {
    let _ = (&c.stream).write_all(&response(code, body, false, false));
    let _ = c.stream.shutdown(Shutdown::Write);
    c.state = State::Linger;
    c.since = Instant::now();
}

/// The request a parsed head announces, or the answer that refuses it.
fn incoming(r: &httparse::Request, max_body: u64) -> Result<Incoming, (u16, String)> {
    let method = r.method.unwrap_or("").to_string();
    let path = r.path.unwrap_or("/").to_string();
    let http10 = r.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut content_encoding = None;
    let mut expect = false;
    for h in r.headers.iter() {
        let v = String::from_utf8_lossy(h.value);
        let v = v.trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = v
                .parse()
                .map_err(|_| (400, format!("Content-Length {v:?} is not a length")))?;
            if length.is_some_and(|l| l != n) {
                return Err((400, "two different Content-Length headers".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = v.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err((501, format!("Transfer-Encoding {v} is not supported")));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            close |= v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if name.eq_ignore_ascii_case("content-encoding") {
            content_encoding = Some(v.to_string());
        } else if name.eq_ignore_ascii_case("expect") {
            expect = v.eq_ignore_ascii_case("100-continue");
        }
    }
    let framing = if chunked {
        Framing::Chunked(Chunked::default())
    } else {
        let n = length.unwrap_or(0);
        if n > max_body {
            return Err((413, "the body is larger than --max-body".into()));
        }
        Framing::Length(n)
    };
    let needs = match framing {
        Framing::Length(n) if n > SMALL_BODY => n,
        _ => 0,
    };
    let capacity = match framing {
        Framing::Length(n) if n <= SMALL_BODY => n as usize,
        _ => 0,
    };
    let has_body = chunked || length.unwrap_or(0) > 0;
    Ok(Incoming {
        head_only: method == "HEAD",
        req: Request {
            method,
            path,
            content_encoding,
            body: Vec::with_capacity(capacity),
        },
        // An HTTP/1.0 client is answered and the connection closed.
        keep_alive: !http10 && !close,
        framing,
        reservation: None,
        needs,
        continue_pending: expect && has_body && !http10,
        started: Instant::now(),
        blocked: false,
    })
}

/// A chunked body, decoded as it arrives.
#[derive(Default)]
struct Chunked {
    /// Bytes left in the current chunk's data.
    left: u64,
    state: ChunkState,
}

#[derive(Default, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Data,
    DataEnd,
    Trailer,
}

impl Chunked {
    /// Moves what `buf` holds of the body into `body`; true once the body (with its trailer)
    /// is complete. Bytes past its end stay in `buf`.
    fn feed(
        &mut self,
        buf: &mut Vec<u8>,
        body: &mut Vec<u8>,
        max: u64,
    ) -> Result<bool, (u16, String)> {
        let bad = |m: &str| (400, format!("a malformed chunked body: {m}"));
        let mut i = 0;
        let done = loop {
            let rest = &buf[i..];
            match self.state {
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if rest.len() > 4096 {
                            return Err(bad("a line is too long"));
                        }
                        break false;
                    };
                    let line = &rest[..end];
                    i += end + 2;
                    if self.state == ChunkState::Trailer {
                        if line.is_empty() {
                            break true;
                        }
                        continue;
                    }
                    let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
                    let hex = std::str::from_utf8(hex)
                        .map_err(|_| bad("a chunk size"))?
                        .trim();
                    if hex.is_empty() || hex.len() > 15 {
                        return Err(bad("a chunk size"));
                    }
                    let n = u64::from_str_radix(hex, 16).map_err(|_| bad("a chunk size"))?;
                    if n == 0 {
                        self.state = ChunkState::Trailer;
                    } else if body.len() as u64 + n > max {
                        return Err((413, "the body is larger than --max-body".into()));
                    } else {
                        self.left = n;
                        self.state = ChunkState::Data;
                    }
                }
                ChunkState::Data => {
                    if rest.is_empty() {
                        break false;
                    }
                    let k = self.left.min(rest.len() as u64) as usize;
                    body.extend_from_slice(&rest[..k]);
                    i += k;
                    self.left -= k as u64;
                    if self.left == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        break false;
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(bad("a chunk does not end with CRLF"));
                    }
                    i += 2;
                    self.state = ChunkState::Size;
                }
            }
        };
        buf.drain(..i);
        Ok(done)
    }
}

/// A worker: handles requests, answers, and gives the connection back.
fn work(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    back: &mpsc::Sender<Option<Conn>>,
    wake: &UnixStream,
    h: &dyn Handler,
) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let Job {
            conn,
            req,
            keep_alive,
            head_only,
            _reservation,
        } = job;
        let (code, body) = h.handle(&req);
        // The body and its share of the budget go before the answer is written.
        drop(req);
        drop(_reservation);
        let written = conn.stream.set_nonblocking(false).is_ok()
            && conn.stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_ok()
            && (&conn.stream)
                .write_all(&response(code, &body, keep_alive, head_only))
                .is_ok()
            && conn.stream.set_nonblocking(true).is_ok();
        let _ = back.send((written && keep_alive).then_some(conn));
        let _ = (&*wake).write(&[1]);
    }
}

fn error_body(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

/// An answer with a JSON body; `keep_alive` false adds `Connection: close`.
fn response(code: u16, body: &str, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    };
    let mut r = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
    .into_bytes();
    if !head_only {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    type Decoded = (Result<bool, (u16, String)>, Vec<u8>, Vec<u8>);

    fn decode(input: &[u8], max: u64) -> Decoded {
        let (mut c, mut buf, mut body) = (Chunked::default(), Vec::new(), Vec::new());
        let mut r = Ok(false);
        // One byte at a time: every split point.
        for &b in input {
            buf.push(b);
            r = c.feed(&mut buf, &mut body, max);
            if !matches!(r, Ok(false)) {
                break;
            }
        }
        (r, body, buf)
    }

    #[test]
    fn chunked_bodies_decode_at_any_split() {
        let (r, body, rest) = decode(
            b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-T: 1\r\n\r\nGET",
            100,
        );
        assert_eq!(r, Ok(true));
        assert_eq!(body, b"hello world!");
        assert!(rest.is_empty(), "stopped at the end of the body");
        assert_eq!(decode(b"zz\r\n", 100).0.unwrap_err().0, 400);
        assert_eq!(decode(b"5\r\nhelloXX", 100).0.unwrap_err().0, 400);
        assert_eq!(
            decode(b"65\r\n", 100).0.unwrap_err().0,
            413,
            "refused at the size line"
        );
    }
}
