//! The one scripted HTTP/1.1 (and HTTPS) test server on 127.0.0.1.
//!
//! It records every request it receives (method, path, headers, lower-case and as sent, body as
//! received, gunzipped on demand, time of arrival, connection number) and lets a handler (or a
//! list of acts, `script`) decide each answer: a status with extra headers (Retry-After, ...), a
//! delay, raw bytes, a hang, a connection closed or reset before the answer, or closed in the
//! middle of it. It can also go through an outage (`down`: nothing listens, connections are
//! refused, open connections are closed) and come back on the same port (`up`): the port stays
//! bound by the server for its whole life (a socket bound, never listening), so no other test
//! can take it in between.
//!
//! Every thread of a server is bounded in time (`set_lifetime`, 300 s by default) and is joined
//! when the server is stopped or dropped.
//!
//! The file stands alone (it uses nothing of tests/common/mod.rs, which re-exports its helpers)
//! so that the library's unit tests include it too (src/http/mod.rs, `test_server`).

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// No server thread lives longer than this after the server started, unless `set_lifetime`
/// says otherwise.
const LIFETIME: Duration = Duration::from_secs(300);

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    /// 0 for the first request to this server (since the last `clear`).
    pub n: usize,
    /// 1 for the first connection.
    pub conn: usize,
    /// When the whole request had arrived.
    pub at: Instant,
    pub wall: SystemTime,
    /// The request line, e.g. "POST /ingest HTTP/1.1".
    pub line: String,
    /// "POST".
    pub method: String,
    /// "/ingest" (the request target as sent, query included).
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// Every header line in order, names as sent, repeated names kept.
    pub raw_headers: Vec<(String, String)>,
    /// As received (compressed when the client compressed); `plain()` decodes it.
    pub body: Vec<u8>,
    /// The status answered; 0 when the server hung, broke the connection or answered raw bytes.
    pub status: u16,
    /// The extra headers answered.
    pub answered: Vec<(String, String)>,
}

impl Hit {
    /// An extra header of the answer.
    pub fn answered(&self, name: &str) -> Option<&str> {
        self.answered
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// How many header lines have this name (any case).
    pub fn header_count(&self, name: &str) -> usize {
        self.raw_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The body, decoded when it says `Content-Encoding: gzip` or `zstd`.
    pub fn plain(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("the body gunzips");
                out
            }
            Some("zstd") => zstd::stream::decode_all(&self.body[..]).expect("the body unzstds"),
            _ => self.body.clone(),
        }
    }

    pub fn envelopes(&self) -> Vec<serde_json::Value> {
        envelopes(&self.plain())
    }

    pub fn seqs(&self) -> Vec<u64> {
        seqs(&self.envelopes())
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Act {
    /// Answer with this status and these extra headers (body "ok", keep-alive).
    Reply(u16, Vec<(String, String)>),
    /// Answer, then close the connection once it has been idle this long.
    ReplyThenCloseAfter(u16, Duration),
    /// Write these bytes as the whole answer, then close the connection once it has been idle
    /// for 300 ms.
    Raw(Vec<u8>),
    /// Wait this long (the request is already recorded), then do the rest.
    After(Duration, Box<Act>),
    /// Never answer; the connection is held until the client gives up or the server stops.
    Hang,
    /// Write the first bytes of a status line, then close.
    CloseMidResponse,
    /// Close without a byte of answer.
    Close,
    /// Close without a byte of answer, with a reset (SO_LINGER 0) instead of an orderly close:
    /// the client reads ECONNRESET.
    Reset,
}

impl Act {
    pub fn status(code: u16) -> Act {
        Act::Reply(code, Vec::new())
    }

    /// Adds an extra header to a `Reply` (also behind `After`).
    pub fn with(self, name: &str, value: &str) -> Act {
        match self {
            Act::Reply(code, mut h) => {
                h.push((name.to_string(), value.to_string()));
                Act::Reply(code, h)
            }
            Act::After(d, a) => Act::After(d, Box::new(a.with(name, value))),
            other => other,
        }
    }

    /// The same answer, `delay` later.
    pub fn after(self, delay: Duration) -> Act {
        Act::After(delay, Box::new(self))
    }

    /// The status this act answers with (0: none).
    fn code(&self) -> u16 {
        match self {
            Act::Reply(c, _) | Act::ReplyThenCloseAfter(c, _) => *c,
            Act::After(_, a) => a.code(),
            _ => 0,
        }
    }

    fn extra(&self) -> Vec<(String, String)> {
        match self {
            Act::Reply(_, h) => h.clone(),
            Act::After(_, a) => a.extra(),
            _ => Vec::new(),
        }
    }
}

type Handler = Box<dyn FnMut(&Hit) -> Act + Send>;

struct Inner {
    hits: Mutex<Vec<Hit>>,
    handler: Mutex<Handler>,
    /// The server is stopped for good.
    stop: AtomicBool,
    /// An outage: the acceptor and every connection end.
    down: AtomicBool,
    /// Accept connections and never read from them.
    silent: bool,
    /// Requests are kept in `hits` (else only the handler sees them).
    keep: AtomicBool,
    conns: AtomicUsize,
    tls_failures: AtomicUsize,
    /// This many coming requests are cut off once their head has arrived.
    cut_next: AtomicUsize,
    born: Instant,
    lifetime_ms: AtomicU64,
    /// A slow link: each connection reads at most this many bytes per second (0: no limit).
    read_rate: AtomicU64,
}

impl Inner {
    /// Stopped for good, or past its lifetime.
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
            || self.born.elapsed() > Duration::from_millis(self.lifetime_ms.load(Ordering::SeqCst))
    }

    /// Stopped, or in an outage.
    fn over(&self) -> bool {
        self.stopped() || self.down.load(Ordering::SeqCst)
    }

    /// Records a request and asks the handler what to do (both locks are released before
    /// the act is carried out, so a delayed answer does not block readers of `hits`).
    fn record(&self, mut hit: Hit, ask: bool) -> Act {
        let mut handler = self.handler.lock().unwrap();
        let mut hits = self.hits.lock().unwrap();
        hit.n = hits.len();
        let act = if ask { (*handler)(&hit) } else { Act::Close };
        if ask {
            hit.status = act.code();
            hit.answered = act.extra();
        }
        if self.keep.load(Ordering::SeqCst) {
            hits.push(hit);
        }
        act
    }
}

/// A server on 127.0.0.1, one thread per connection.
pub struct Server {
    pub port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    inner: Arc<Inner>,
    /// Keeps the port bound while the server lives, listening or not.
    _hold: OwnedFd,
    acceptor: Option<JoinHandle<()>>,
    conn_threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Server {
    /// A plain HTTP server.
    pub fn start(handler: impl FnMut(&Hit) -> Act + Send + 'static) -> Server {
        Server::spawn(None, false, Box::new(handler))
    }

    /// An HTTPS server with this rustls configuration.
    pub fn start_tls(
        config: Arc<rustls::ServerConfig>,
        handler: impl FnMut(&Hit) -> Act + Send + 'static,
    ) -> Server {
        Server::spawn(Some(config), false, Box::new(handler))
    }

    /// Answers the requests in order with `acts`, and with 200 beyond them.
    pub fn script(acts: Vec<Act>) -> Server {
        let mut acts = VecDeque::from(acts);
        Server::start(move |_| acts.pop_front().unwrap_or(Act::status(200)))
    }

    /// Answers every request with `code`.
    pub fn always(code: u16) -> Server {
        Server::start(move |_| Act::status(code))
    }

    /// A receiver: answers 200 (see `set_status`) and records every request.
    pub fn receiver() -> Server {
        Server::always(200)
    }

    /// A server that accepts connections and never reads or answers anything.
    pub fn silent() -> Server {
        Server::spawn(None, true, Box::new(|_| Act::Hang))
    }

    fn spawn(tls: Option<Arc<rustls::ServerConfig>>, silent: bool, handler: Handler) -> Server {
        let (hold, port) = bound_socket(0, true);
        let inner = Arc::new(Inner {
            hits: Mutex::new(Vec::new()),
            handler: Mutex::new(handler),
            stop: AtomicBool::new(false),
            down: AtomicBool::new(false),
            silent,
            keep: AtomicBool::new(true),
            conns: AtomicUsize::new(0),
            tls_failures: AtomicUsize::new(0),
            cut_next: AtomicUsize::new(0),
            born: Instant::now(),
            lifetime_ms: AtomicU64::new(LIFETIME.as_millis() as u64),
            read_rate: AtomicU64::new(0),
        });
        let mut s = Server {
            port,
            tls,
            inner,
            _hold: hold,
            acceptor: None,
            conn_threads: Arc::new(Mutex::new(Vec::new())),
        };
        s.listen();
        s
    }

    /// Binds a listener on the server's port (beside the socket that holds it, both with
    /// SO_REUSEADDR) and starts accepting.
    fn listen(&mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < end, "bind 127.0.0.1:{}: {e}", self.port);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        listener.set_nonblocking(true).expect("nonblocking");
        let (i2, t2, tls2) = (
            Arc::clone(&self.inner),
            Arc::clone(&self.conn_threads),
            self.tls.clone(),
        );
        self.acceptor = Some(std::thread::spawn(move || {
            while !i2.over() {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let conn = i2.conns.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = tcp.set_nonblocking(false);
                let _ = tcp.set_nodelay(true);
                let _ = tcp.set_read_timeout(Some(Duration::from_millis(20)));
                let i3 = Arc::clone(&i2);
                let tls3 = tls2.clone();
                // A second handle on the socket, for `Act::Reset`.
                let Ok(ctl) = tcp.try_clone() else {
                    continue;
                };
                let h = std::thread::spawn(move || match tls3 {
                    _ if i3.silent => hold_silently(tcp, &i3),
                    None => serve(tcp, &ctl, conn, &i3),
                    Some(cfg) => {
                        let Ok(sc) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(sc, tcp), &ctl, conn, &i3);
                    }
                });
                let mut threads = t2.lock().unwrap();
                threads.retain(|t| !t.is_finished());
                threads.push(h);
            }
            // The listener closes here: connections are refused from now on.
        }));
    }

    /// Joins the acceptor and every connection thread (they end on `stop` or `down`).
    fn join(&mut self) {
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads: Vec<_> = self.conn_threads.lock().unwrap().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/ingest", self.port)
    }

    /// Lets the server's threads live this long after its start (300 s by default).
    pub fn set_lifetime(&self, d: Duration) {
        self.inner
            .lifetime_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Whether requests are kept for `hits` (true by default); a long run whose handler looks
    /// at each request itself turns it off to keep memory flat (the handler then sees `n` 0).
    pub fn set_recording(&self, keep: bool) {
        self.inner.keep.store(keep, Ordering::SeqCst);
    }

    /// An outage: stops listening (connections are refused) and closes every open
    /// connection. The port stays held for `up`.
    pub fn down(&mut self) {
        self.inner.down.store(true, Ordering::SeqCst);
        self.join();
    }

    /// Back from an outage, on the same port.
    pub fn up(&mut self) {
        if self.acceptor.is_some() || self.inner.stop.load(Ordering::SeqCst) {
            return;
        }
        self.inner.down.store(false, Ordering::SeqCst);
        self.listen();
    }

    pub fn is_up(&self) -> bool {
        self.acceptor.is_some()
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().unwrap().clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.inner.hits.lock().unwrap().clear();
    }

    pub fn count(&self) -> usize {
        self.inner.hits.lock().unwrap().len()
    }

    /// Connections accepted so far.
    pub fn conns(&self) -> usize {
        self.inner.conns.load(Ordering::SeqCst)
    }

    /// TLS connections that failed (handshake refused or aborted).
    pub fn tls_failures(&self) -> usize {
        self.inner.tls_failures.load(Ordering::SeqCst)
    }

    /// Every envelope of every 2xx answer, in arrival order.
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        self.hits()
            .iter()
            .filter(|h| h.ok())
            .flat_map(|h| h.envelopes())
            .collect()
    }

    /// Waits (bounded) until at least `n` requests arrived.
    pub fn wait_hits(&self, n: usize, timeout: Duration) -> Vec<Hit> {
        wait_until(timeout, || self.count() >= n);
        self.hits()
    }

    /// Waits (bounded) until at least `n` envelopes were accepted.
    pub fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        wait_until(timeout, || self.delivered().len() >= n);
        self.delivered()
    }

    /// The next `n` requests are cut off as soon as their head has arrived: the server
    /// closes the connection with the body unread (the kernel answers with a reset, and a
    /// client still writing gets EPIPE or ECONNRESET). They are recorded with an empty body
    /// and status 0; the handler does not see them.
    pub fn cut_next(&self, n: usize) {
        self.inner.cut_next.store(n, Ordering::SeqCst);
    }

    /// A slow link: from now on each connection reads about `bytes_per_s` bytes per second
    /// (in steps of 20 ms), so a request takes its size / `bytes_per_s` to arrive; 0 reads at
    /// full speed.
    pub fn set_read_rate(&self, bytes_per_s: u64) {
        self.inner.read_rate.store(bytes_per_s, Ordering::SeqCst);
    }

    /// Replaces the handler.
    pub fn set_handler(&self, handler: impl FnMut(&Hit) -> Act + Send + 'static) {
        *self.inner.handler.lock().unwrap() = Box::new(handler);
    }

    /// Answers every coming request with `code`.
    pub fn set_status(&self, code: u16) {
        self.set_handler(move |_| Act::status(code));
    }

    pub fn stop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request as read: its line, its header lines, its body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

fn hit((line, raw_headers, body): Request, conn: usize) -> Hit {
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let headers = raw_headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    Hit {
        n: 0,
        conn,
        at: Instant::now(),
        wall: SystemTime::now(),
        line,
        method,
        path,
        headers,
        raw_headers,
        body,
        status: 0,
        answered: Vec::new(),
    }
}

/// Reads one request (Content-Length bodies); None when the peer closed or failed, the server
/// stops, or the request was cut off (then it is recorded).
fn read_request<S: Read>(s: &mut S, buf: &mut Vec<u8>, inner: &Inner) -> Option<Request> {
    let mut head_seen = false;
    loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
            let mut lines = head.split("\r\n");
            let line = lines.next().unwrap_or("").to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let cut = !head_seen
                && inner
                    .cut_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            head_seen = true;
            if cut {
                inner.record(hit((line, headers, Vec::new()), 0), false);
                return None;
            }
            if buf.len() >= pos + 4 + len {
                let body = buf[pos + 4..pos + 4 + len].to_vec();
                buf.drain(..pos + 4 + len);
                return Some((line, headers, body));
            }
        }
        if inner.over() {
            return None;
        }
        let mut chunk = [0u8; 16384];
        let rate = inner.read_rate.load(Ordering::SeqCst);
        // A slow link reads 20 ms worth at a time, then waits those 20 ms.
        let step = if rate == 0 {
            chunk.len()
        } else {
            (rate as usize / 50).clamp(1, chunk.len())
        };
        match s.read(&mut chunk[..step]) {
            Ok(0) => return None,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(us) = (n as u64 * 1_000_000).checked_div(rate) {
                    pause(Duration::from_micros(us), inner);
                }
            }
            Err(e) if transient(&e) => {}
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    inner.tls_failures.fetch_add(1, Ordering::SeqCst);
                }
                return None;
            }
        }
    }
}

/// Waits until the peer closes (or the server stops), discarding what arrives.
fn hold<S: Read>(s: &mut S, inner: &Inner, limit: Option<Duration>) {
    let start = Instant::now();
    let mut chunk = [0u8; 4096];
    while !inner.over() && limit.is_none_or(|l| start.elapsed() < l) {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if transient(&e) => {}
            Err(_) => return,
        }
    }
}

/// A silent server's connection: kept open, never read, until the server stops.
fn hold_silently(tcp: TcpStream, inner: &Inner) {
    while !inner.over() {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(tcp);
}

/// Sleeps `d` in short steps, ending early when the server stops (an outage lets an answer
/// under way go out first).
fn pause(d: Duration, inner: &Inner) {
    let end = Instant::now() + d;
    while !inner.stopped() && Instant::now() < end {
        std::thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(10)),
        );
    }
}

/// Serves the requests of one connection; `tcp` is a second handle on its socket.
fn serve<S: Read + Write>(mut s: S, tcp: &TcpStream, conn: usize, inner: &Inner) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut s, &mut buf, inner) else {
            return;
        };
        let mut act = inner.record(hit(request, conn), true);
        while let Act::After(d, next) = act {
            pause(d, inner);
            act = *next;
        }
        if inner.stopped() {
            return;
        }
        match act {
            Act::Reply(code, extra) => {
                if !reply(&mut s, code, &extra) {
                    return;
                }
            }
            Act::ReplyThenCloseAfter(code, idle) => {
                if reply(&mut s, code, &[]) {
                    hold(&mut s, inner, Some(idle));
                }
                return;
            }
            Act::Raw(bytes) => {
                if s.write_all(&bytes).is_ok() && s.flush().is_ok() {
                    hold(&mut s, inner, Some(Duration::from_millis(300)));
                }
                return;
            }
            Act::Hang => {
                hold(&mut s, inner, None);
                return;
            }
            Act::CloseMidResponse => {
                let _ = s.write_all(b"HTTP/1.1 20");
                let _ = s.flush();
                return;
            }
            Act::Reset => {
                linger_zero(tcp);
                return;
            }
            Act::Close | Act::After(..) => return,
        }
    }
}

/// Makes the socket's close a reset: SO_LINGER on, with a zero timeout.
fn linger_zero(tcp: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor `tcp` keeps open; `linger` is valid for the size
    // passed.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

fn reply<S: Write>(s: &mut S, code: u16, extra: &[(String, String)]) -> bool {
    // 1xx, 204 and 304 answers have no body.
    let body = if code < 200 || code == 204 || code == 304 {
        ""
    } else {
        "ok"
    };
    let mut r = format!("HTTP/1.1 {code} Test\r\n");
    if !body.is_empty() {
        r.push_str("content-length: 2\r\n");
    }
    for (n, v) in extra {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    s.write_all(r.as_bytes()).is_ok() && s.flush().is_ok()
}

// ---------------------------------------------------------------------------------------------
// Ports, bodies and bounded waits (re-exported by tests/common/mod.rs).

/// A socket bound to 127.0.0.1:`port` (0 = any) and never listening, and the port it holds.
/// Connections to the port are refused, and the kernel hands the port to no other socket while
/// this one stays open; with `reuse` (SO_REUSEADDR), a listener of the same test that also
/// sets it (as std's `TcpListener` does) can still bind the port beside it.
pub fn bound_socket(port: u16, reuse: bool) -> (OwnedFd, u16) {
    // SAFETY: plain socket calls on a descriptor this function owns (it is handed to an
    // `OwnedFd` at once); `addr` and `one` are valid for the sizes passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let owned = OwnedFd::from_raw_fd(fd);
        if reuse {
            let one: libc::c_int = 1;
            let rc = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let rc = libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len);
        assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
        (owned, u16::from_be(addr.sin_port))
    }
}

/// Parses a body (json array or ndjson) into envelopes.
pub fn envelopes(body: &[u8]) -> Vec<serde_json::Value> {
    if let Ok(serde_json::Value::Array(a)) = serde_json::from_slice(body) {
        return a;
    }
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// The `seq` values of envelopes.
pub fn seqs(env: &[serde_json::Value]) -> Vec<u64> {
    env.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

/// A bounded poll: true as soon as `f` holds, false after `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
