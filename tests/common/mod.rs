//! Test support: a real HTTP receiver on 127.0.0.1 whose behaviour can be switched while a
//! buffer runs, and helpers to build configurations in temporary directories.
#![allow(dead_code)]

use edgebuf::Config;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub status: u16,
}

/// A tiny_http server on 127.0.0.1 answering one request at a time on its own thread, until
/// stopped or dropped: the serving loop every receiver of these tests shares.
pub struct Served {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts serving on `port` (0 = any). A given port is bound again even while the last
/// listener on it goes away (retried for up to 10 s), so that a receiver comes back on the port
/// of an outage. `answer` gets each request's lower-case headers and body and returns the
/// status and an optional Retry-After; whatever it does (record, wait) happens before the
/// answer goes out.
pub fn serve(
    port: u16,
    mut answer: impl FnMut(BTreeMap<String, String>, &[u8]) -> (u16, Option<String>) + Send + 'static,
) -> Served {
    let end = Instant::now() + Duration::from_secs(10);
    let server = loop {
        match tiny_http::Server::http(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    port != 0 && Instant::now() < end,
                    "bind 127.0.0.1:{port}: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let st = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut body = Vec::new();
        while !st.load(Ordering::SeqCst) {
            let mut req = match server.recv_timeout(Duration::from_millis(20)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(_) => break,
            };
            body.clear();
            let _ = req.as_reader().read_to_end(&mut body);
            let headers = req
                .headers()
                .iter()
                .map(|h| {
                    (
                        h.field.as_str().as_str().to_ascii_lowercase(),
                        h.value.as_str().to_string(),
                    )
                })
                .collect();
            let (code, retry_after) = answer(headers, &body);
            let mut resp = tiny_http::Response::from_string("ok").with_status_code(code);
            if let Some(v) = retry_after {
                if let Ok(hd) = tiny_http::Header::from_bytes("Retry-After", v.as_bytes()) {
                    resp.add_header(hd);
                }
            }
            let _ = req.respond(resp);
        }
    });
    Served {
        port,
        stop,
        thread: Some(thread),
    }
}

impl Served {
    /// Stops listening (and answering) and waits for the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A receiver answering with `status` (200 by default), recording every request.
pub struct Receiver {
    pub port: u16,
    pub status: Arc<AtomicU16>,
    /// Extra response header (Retry-After) while set.
    pub retry_after: Arc<Mutex<Option<String>>>,
    pub requests: Arc<Mutex<Vec<Request>>>,
    pub hits: Arc<AtomicU64>,
    served: Served,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    /// Starts on a given port (0 = any), e.g. to come back on the port of an outage.
    pub fn start_on(port: u16) -> Receiver {
        let status = Arc::new(AtomicU16::new(200));
        let retry_after = Arc::new(Mutex::new(None::<String>));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicU64::new(0));
        let (s, ra, rq, h) = (
            Arc::clone(&status),
            Arc::clone(&retry_after),
            Arc::clone(&requests),
            Arc::clone(&hits),
        );
        let served = serve(port, move |headers, body| {
            let code = s.load(Ordering::SeqCst);
            h.fetch_add(1, Ordering::SeqCst);
            rq.lock().unwrap().push(Request {
                headers,
                body: body.to_vec(),
                status: code,
            });
            (code, ra.lock().unwrap().clone())
        });
        Receiver {
            port: served.port,
            status,
            retry_after,
            requests,
            hits,
            served,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    /// Every envelope of every 2xx request, in arrival order.
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for r in self.requests.lock().unwrap().iter() {
            if (200..300).contains(&r.status) {
                out.extend(envelopes(&r.body));
            }
        }
        out
    }

    /// Waits (bounded) until `n` envelopes were accepted.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            let d = self.delivered();
            if d.len() >= n || Instant::now() >= end {
                return d;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(&mut self) {
        self.served.stop();
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

/// A port with nothing listening (an endpoint that is down), reserved for this process: a
/// socket stays bound to it without listening, so connections are refused and the kernel hands
/// the port to no other test in between. With SO_REUSEADDR on both sides, a server of this
/// test (tiny_http, nginx) can still bind and listen on it later, as an endpoint coming back.
pub fn dead_port() -> u16 {
    // SAFETY: plain socket calls on a descriptor this function owns (and never closes);
    // `addr` and `one` are valid for the sizes passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let one: libc::c_int = 1;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let rc = libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len);
        assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
        u16::from_be(addr.sin_port)
    }
}

/// A config for a buffer file in `dir` sending to `endpoint`, with short timings for tests.
pub fn config(dir: &std::path::Path, endpoint: &str) -> Config {
    let mut c = Config::new();
    c.set("path", dir.join("buf.db").to_str().unwrap()).unwrap();
    c.set("endpoint", endpoint).unwrap();
    c.set("source.id", "test-device").unwrap();
    c.set("commit.interval_ms", "20").unwrap();
    c.set("batch.linger_ms", "10").unwrap();
    c.set("retry.initial_ms", "20").unwrap();
    c.set("retry.max_ms", "200").unwrap();
    c.set("http.timeout_ms", "2000").unwrap();
    c
}

/// The `seq` values of envelopes.
pub fn seqs(env: &[serde_json::Value]) -> Vec<u64> {
    env.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

// ---------------------------------------------------------------------------------------------
// For tests/http_*.rs: a scripted HTTP/1.1 (and HTTPS) server on 127.0.0.1 that times and
// records every request and lets a handler answer, hang or break each one; an event recorder;
// test certificates.

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

/// Every event of a buffer, with the time the callback saw it.
#[derive(Clone, Default)]
pub struct EventLog(pub Arc<Mutex<Vec<(Instant, edgebuf::Event)>>>);

impl EventLog {
    pub fn new() -> EventLog {
        EventLog::default()
    }

    pub fn callback(&self) -> Option<edgebuf::Callback> {
        let log = Arc::clone(&self.0);
        Some(Box::new(move |e: &edgebuf::Event| {
            log.lock().unwrap().push((Instant::now(), e.clone()));
        }))
    }

    pub fn all(&self) -> Vec<edgebuf::Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub fn kinds(&self) -> Vec<i32> {
        self.all().iter().map(|e| e.kind).collect()
    }

    pub fn of(&self, kind: i32) -> Vec<edgebuf::Event> {
        self.all().into_iter().filter(|e| e.kind == kind).collect()
    }
}

pub mod httpd {
    use std::collections::BTreeMap;
    use std::io::{self, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant, SystemTime};

    /// No server thread lives longer than this, whatever a test does.
    const LIFETIME: Duration = Duration::from_secs(60);

    /// One request as the server saw it.
    #[derive(Debug, Clone)]
    pub struct Hit {
        /// 0 for the first request to this server.
        pub n: usize,
        /// 1 for the first connection.
        pub conn: usize,
        /// When the whole request had arrived.
        pub at: Instant,
        pub wall: SystemTime,
        /// The request line, e.g. "POST /ingest HTTP/1.1".
        pub line: String,
        /// Lower-case names.
        pub headers: BTreeMap<String, String>,
        /// As received (compressed when the client compressed).
        pub body: Vec<u8>,
        /// The status answered; 0 when the handler hung or broke the connection.
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

        /// The body, gunzipped when it says `Content-Encoding: gzip`.
        pub fn plain(&self) -> Vec<u8> {
            if self.header("content-encoding") == Some("gzip") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&self.body[..])
                    .read_to_end(&mut out)
                    .expect("the body gunzips");
                out
            } else {
                self.body.clone()
            }
        }

        pub fn envelopes(&self) -> Vec<serde_json::Value> {
            super::envelopes(&self.plain())
        }

        pub fn seqs(&self) -> Vec<u64> {
            super::seqs(&self.envelopes())
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
        /// Never answer; the connection is held until the client gives up or the server stops.
        Hang,
        /// Write the first bytes of a status line, then close.
        CloseMidResponse,
        /// Close without a byte of answer.
        Close,
    }

    impl Act {
        pub fn status(code: u16) -> Act {
            Act::Reply(code, Vec::new())
        }

        pub fn with(self, name: &str, value: &str) -> Act {
            match self {
                Act::Reply(code, mut h) => {
                    h.push((name.to_string(), value.to_string()));
                    Act::Reply(code, h)
                }
                other => other,
            }
        }
    }

    type Handler = Box<dyn FnMut(&Hit) -> Act + Send>;

    struct Inner {
        hits: Mutex<Vec<Hit>>,
        handler: Mutex<Handler>,
        stop: AtomicBool,
        conns: AtomicUsize,
        tls_failures: AtomicUsize,
        /// This many coming requests are cut off once their head has arrived.
        cut_next: AtomicUsize,
        born: Instant,
    }

    impl Inner {
        fn over(&self) -> bool {
            self.stop.load(Ordering::SeqCst) || self.born.elapsed() > LIFETIME
        }
    }

    /// A server on 127.0.0.1, one thread per connection.
    pub struct Server {
        pub port: u16,
        tls: bool,
        inner: Arc<Inner>,
        acceptor: Option<JoinHandle<()>>,
        conn_threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    }

    impl Server {
        /// A plain HTTP server.
        pub fn start(handler: impl FnMut(&Hit) -> Act + Send + 'static) -> Server {
            Server::spawn(None, Box::new(handler))
        }

        /// An HTTPS server with this rustls configuration.
        pub fn start_tls(
            config: Arc<rustls::ServerConfig>,
            handler: impl FnMut(&Hit) -> Act + Send + 'static,
        ) -> Server {
            Server::spawn(Some(config), Box::new(handler))
        }

        /// Answers every request with `code`.
        pub fn always(code: u16) -> Server {
            Server::start(move |_| Act::status(code))
        }

        fn spawn(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            listener.set_nonblocking(true).expect("nonblocking");
            let port = listener.local_addr().expect("addr").port();
            let inner = Arc::new(Inner {
                hits: Mutex::new(Vec::new()),
                handler: Mutex::new(handler),
                stop: AtomicBool::new(false),
                conns: AtomicUsize::new(0),
                tls_failures: AtomicUsize::new(0),
                cut_next: AtomicUsize::new(0),
                born: Instant::now(),
            });
            let conn_threads = Arc::new(Mutex::new(Vec::new()));
            let (i2, t2, tls2) = (Arc::clone(&inner), Arc::clone(&conn_threads), tls.clone());
            let acceptor = std::thread::spawn(move || {
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
                    let h = std::thread::spawn(move || match tls3 {
                        None => serve(tcp, conn, &i3),
                        Some(cfg) => {
                            let Ok(sc) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve(rustls::StreamOwned::new(sc, tcp), conn, &i3);
                        }
                    });
                    t2.lock().unwrap().push(h);
                }
            });
            Server {
                port,
                tls: tls.is_some(),
                inner,
                acceptor: Some(acceptor),
                conn_threads,
            }
        }

        pub fn url(&self) -> String {
            let scheme = if self.tls { "https" } else { "http" };
            format!("{scheme}://127.0.0.1:{}/ingest", self.port)
        }

        pub fn hits(&self) -> Vec<Hit> {
            self.inner.hits.lock().unwrap().clone()
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
            super::wait_until(timeout, || self.count() >= n);
            self.hits()
        }

        /// Waits (bounded) until at least `n` envelopes were accepted.
        pub fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
            super::wait_until(timeout, || self.delivered().len() >= n);
            self.delivered()
        }

        /// The next `n` requests are cut off as soon as their head has arrived: the server
        /// closes the connection with the body unread (the kernel answers with a reset, and a
        /// client still writing gets EPIPE or ECONNRESET). They are recorded with an empty body
        /// and status 0; the handler does not see them.
        pub fn cut_next(&self, n: usize) {
            self.inner.cut_next.store(n, Ordering::SeqCst);
        }

        /// Replaces the handler.
        pub fn set_handler(&self, handler: impl FnMut(&Hit) -> Act + Send + 'static) {
            *self.inner.handler.lock().unwrap() = Box::new(handler);
        }

        pub fn stop(&mut self) {
            self.inner.stop.store(true, Ordering::SeqCst);
            if let Some(a) = self.acceptor.take() {
                let _ = a.join();
            }
            let threads: Vec<_> = self.conn_threads.lock().unwrap().drain(..).collect();
            for t in threads {
                let _ = t.join();
            }
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

    /// Reads one request (Content-Length bodies); None when the peer closed or failed, or the
    /// server stops.
    fn read_request<S: Read>(
        s: &mut S,
        buf: &mut Vec<u8>,
        inner: &Inner,
    ) -> Option<(String, BTreeMap<String, String>, Vec<u8>)> {
        let mut head_seen = false;
        loop {
            if let Some(pos) = find(buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
                let mut lines = head.split("\r\n");
                let line = lines.next().unwrap_or("").to_string();
                let headers: BTreeMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let cut = !head_seen
                    && inner
                        .cut_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                head_seen = true;
                if cut {
                    let mut hits = inner.hits.lock().unwrap();
                    let n = hits.len();
                    hits.push(Hit {
                        n,
                        conn: 0,
                        at: Instant::now(),
                        wall: SystemTime::now(),
                        line,
                        headers,
                        body: Vec::new(),
                        status: 0,
                        answered: Vec::new(),
                    });
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
            match s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
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

    fn serve<S: Read + Write>(mut s: S, conn: usize, inner: &Inner) {
        let mut buf = Vec::new();
        loop {
            let Some((line, headers, body)) = read_request(&mut s, &mut buf, inner) else {
                return;
            };
            let act = {
                let mut handler = inner.handler.lock().unwrap();
                let mut hits = inner.hits.lock().unwrap();
                let mut hit = Hit {
                    n: hits.len(),
                    conn,
                    at: Instant::now(),
                    wall: SystemTime::now(),
                    line,
                    headers,
                    body,
                    status: 0,
                    answered: Vec::new(),
                };
                let act = (*handler)(&hit);
                hit.status = match &act {
                    Act::Reply(c, _) | Act::ReplyThenCloseAfter(c, _) => *c,
                    _ => 0,
                };
                if let Act::Reply(_, extra) = &act {
                    hit.answered = extra.clone();
                }
                hits.push(hit);
                act
            };
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
                Act::Hang => {
                    hold(&mut s, inner, None);
                    return;
                }
                Act::CloseMidResponse => {
                    let _ = s.write_all(b"HTTP/1.1 20");
                    let _ = s.flush();
                    return;
                }
                Act::Close => return,
            }
        }
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

    /// A server that accepts connections and never reads or answers anything.
    pub struct Silent {
        pub port: u16,
        stop: Arc<AtomicBool>,
        accepted: Arc<AtomicUsize>,
        thread: Option<JoinHandle<()>>,
    }

    impl Silent {
        pub fn start() -> Silent {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            listener.set_nonblocking(true).expect("nonblocking");
            let port = listener.local_addr().expect("addr").port();
            let stop = Arc::new(AtomicBool::new(false));
            let accepted = Arc::new(AtomicUsize::new(0));
            let (s2, a2) = (Arc::clone(&stop), Arc::clone(&accepted));
            let thread = std::thread::spawn(move || {
                let born = Instant::now();
                let mut held: Vec<TcpStream> = Vec::new();
                while !s2.load(Ordering::SeqCst) && born.elapsed() < LIFETIME {
                    match listener.accept() {
                        Ok((tcp, _)) => {
                            a2.fetch_add(1, Ordering::SeqCst);
                            held.push(tcp);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
            Silent {
                port,
                stop,
                accepted,
                thread: Some(thread),
            }
        }

        pub fn url(&self) -> String {
            format!("http://127.0.0.1:{}/ingest", self.port)
        }

        pub fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
    }

    impl Drop for Silent {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Test certificates: a CA, a server certificate for 127.0.0.1 and localhost, and client
    /// certificates signed by the same CA.
    pub struct Pki {
        pub ca_pem: String,
        pub ca_der: rustls::pki_types::CertificateDer<'static>,
        ca_params: rcgen::CertificateParams,
        ca_key: rcgen::KeyPair,
        server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        server_key: Vec<u8>,
    }

    fn ca(name: &str) -> (rcgen::CertificateParams, rcgen::KeyPair, rcgen::Certificate) {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let k = rcgen::KeyPair::generate().expect("key");
        let c = p.self_signed(&k).expect("ca cert");
        (p, k, c)
    }

    /// The PEM of a CA that signed nothing here.
    pub fn other_ca_pem() -> String {
        ca("another CA").2.pem()
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    impl Pki {
        pub fn new() -> Pki {
            let (ca_params, ca_key, ca_cert) = ca("edgebuf http test CA");
            let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
            let sp = rcgen::CertificateParams::new(vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
            ])
            .expect("params");
            let sk = rcgen::KeyPair::generate().expect("key");
            let sc = sp.signed_by(&sk, &issuer).expect("server cert");
            Pki {
                ca_pem: ca_cert.pem(),
                ca_der: ca_cert.der().clone(),
                ca_params,
                ca_key,
                server_chain: vec![sc.der().clone()],
                server_key: sk.serialize_der(),
            }
        }

        /// (certificate PEM, key PEM) of a client certificate signed by this CA.
        pub fn client(&self, name: &str) -> (String, String) {
            let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
            let k = rcgen::KeyPair::generate().expect("key");
            let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
            p.distinguished_name.push(rcgen::DnType::CommonName, name);
            let c = p.signed_by(&k, &issuer).expect("client cert");
            (c.pem(), k.serialize_pem())
        }

        /// A server configuration; with `require_client_cert`, only clients with a certificate
        /// of this CA get through the handshake.
        pub fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
            let builder = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions");
            let builder = if require_client_cert {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(self.ca_der.clone()).expect("root");
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .expect("verifier");
                builder.with_client_cert_verifier(v)
            } else {
                builder.with_no_client_auth()
            };
            Arc::new(
                builder
                    .with_single_cert(
                        self.server_chain.clone(),
                        rustls::pki_types::PrivateKeyDer::Pkcs8(
                            rustls::pki_types::PrivatePkcs8KeyDer::from(self.server_key.clone()),
                        ),
                    )
                    .expect("server config"),
            )
        }
    }
}
