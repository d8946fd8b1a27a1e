//! docs/reference.md, the wire behind a real reverse proxy: a private nginx (Debian's `nginx-light`) on a 127.0.0.1
//! port, with its own configuration, logs and temp dirs in a temporary directory, in front of
//! the test receiver. nginx terminates TLS and requires a client certificate, closes keep-alive
//! connections after 3 requests and after 1 s idle, limits the body size (413) and the request
//! rate (429 without Retry-After), and answers 502 while the receiver is down.
//!
//! Every test checks real outcomes at the receiver behind nginx: each record arrives exactly
//! once (by id), in seq order, and nothing good is dead-lettered; nginx's access log tells what
//! nginx itself saw and answered.
//!
//! nginx missing is a failure with a message that says what to install; set
//! EDGEBUF_SKIP_NGINX=1 to skip these tests explicitly.

mod common;
use common::*;
use edgebuf::events::{EVENT_DEAD_LETTER, EVENT_OFFLINE};
use edgebuf::status::{CONNECTIVITY_OFFLINE, CONNECTIVITY_ONLINE};
use edgebuf::{Buffer, Code, Config};
use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Certificates: the tests' one PKI (tests/common/pki.rs), written as files for nginx and
// edgebuf.

/// The PKI (a CA, and a server certificate for 127.0.0.1 signed by it, for nginx), a client
/// certificate signed by it (for edgebuf), and their PEM files.
struct Certs {
    pki: Pki,
    client: ClientCert,
    files: PkiFiles,
}

fn make_certs(dir: &Path) -> Certs {
    let pki = Pki::new();
    let client = pki.client("device-7");
    let files = pki.write(dir, &client);
    Certs { pki, client, files }
}

// ---------------------------------------------------------------------------------------------
// A private nginx.

/// The nginx binary; None when the tests are explicitly skipped; panics when it is missing.
fn nginx_binary() -> Option<PathBuf> {
    if std::env::var("EDGEBUF_SKIP_NGINX").as_deref() == Ok("1") {
        eprintln!("EDGEBUF_SKIP_NGINX=1: skipping the nginx reverse-proxy test");
        return None;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join("nginx");
        if p.is_file() {
            return Some(p);
        }
    }
    panic!(
        "nginx is not installed: the reverse-proxy tests (tests/nginx_proxy.rs) run a private \
         nginx on 127.0.0.1. Install Debian's nginx-light (`apt-get install -y nginx-light`; \
         .ci/run does this), or set EDGEBUF_SKIP_NGINX=1 to skip these tests explicitly."
    );
}

/// What differs between the tests' nginx instances.
#[derive(Clone, Copy)]
struct Limits {
    /// client_max_body_size.
    body: &'static str,
    /// limit_req_zone rate, e.g. "5r/s".
    rate: &'static str,
    /// limit_req burst (0: none).
    burst: u32,
}

const GENEROUS: Limits = Limits {
    body: "1m",
    rate: "1000r/s",
    burst: 1000,
};

/// One line of nginx's access log.
#[derive(Debug, Clone)]
struct Line {
    msec: f64,
    status: u16,
    conn: u64,
    conn_requests: u64,
    /// The request's Content-Length; 0 when absent.
    content_length: u64,
    idempotency_key: String,
}

/// nginx as a child process, killed and reaped in Drop. Single process (`master_process off`):
/// no worker switches to another user, and killing the child stops all of nginx.
struct Nginx {
    child: Child,
    port: u16,
    /// Holds `port` until nginx is gone (dropped after the child is killed).
    _hold: std::os::fd::OwnedFd,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx on a free 127.0.0.1 port in front of `upstream` (a 127.0.0.1 port), and
    /// waits until it accepts connections.
    fn start(bin: &Path, certs: &Certs, upstream: u16, limits: Limits) -> Nginx {
        match Nginx::try_start(bin, certs, upstream, limits) {
            Ok(n) => n,
            Err(e) => panic!("nginx did not start: {e}"),
        }
    }

    fn try_start(
        bin: &Path,
        certs: &Certs,
        upstream: u16,
        limits: Limits,
    ) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        // The port is held by this test for nginx's whole life (a socket bound with
        // SO_REUSEADDR, never listening), and nginx (which sets SO_REUSEADDR too) listens beside
        // it: the port is never free between the choice and nginx's bind, and no other test
        // can take it. (Handing nginx a listening socket through its NGINX variable crashes
        // nginx 1.22 in single-process mode.)
        let (hold, port) = bound_socket(0, true);
        let burst = if limits.burst > 0 {
            format!(" burst={} nodelay", limits.burst)
        } else {
            String::new()
        };
        let conf = format!(
            r#"master_process off;
worker_processes 1;
error_log {d}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format edgebuf '$msec $status $connection $connection_requests $content_length "$http_idempotency_key"';
    access_log {d}/access.log edgebuf;
    limit_req_zone $binary_remote_addr zone=edgebuf:1m rate={rate};
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {server_cert};
        ssl_certificate_key {server_key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        keepalive_requests 3;
        keepalive_timeout 1s;
        client_max_body_size {body};
        client_body_buffer_size 1m;
        location / {{
            limit_req zone=edgebuf{burst};
            limit_req_status 429;
            proxy_pass http://127.0.0.1:{upstream};
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
        }}
    }}
}}
"#,
            rate = limits.rate,
            body = limits.body,
            server_cert = certs.files.server_cert,
            server_key = certs.files.server_key,
            ca = certs.files.ca,
        );
        let conf_path = write_file(dir.path(), "nginx.conf", &conf);
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg(format!("daemon off; pid {d}/nginx.pid;"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        // nginx dies with the test thread that started it, even if the test process is killed.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let mut n = Nginx {
            child,
            port,
            _hold: hold,
            dir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = n.child.try_wait() {
                return Err(format!("nginx exited ({status}): {}", n.diagnostics()));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(n);
            }
            if Instant::now() > end {
                return Err(format!(
                    "nginx not listening after 10 s: {}",
                    n.diagnostics()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn diagnostics(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "stderr: {} error.log: {}",
            read("stderr.log").trim(),
            read("error.log").trim()
        )
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/ingest", self.port)
    }

    /// nginx's access log so far (one line per request it answered).
    fn log(&self) -> Vec<Line> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let (head, key) = l.split_once(" \"").expect("log line");
                let f: Vec<&str> = head.split(' ').collect();
                Line {
                    msec: f[0].parse().unwrap(),
                    status: f[1].parse().unwrap(),
                    conn: f[2].parse().unwrap(),
                    conn_requests: f[3].parse().unwrap(),
                    content_length: f[4].parse().unwrap_or(0),
                    idempotency_key: key.trim_end_matches('"').to_string(),
                }
            })
            .collect()
    }

    /// The access log once the answers to `passed` requests that reached the receiver are
    /// logged: nginx writes a line just after the answer, so a client may see the answer first.
    fn log_after(&self, passed: usize) -> Vec<Line> {
        wait_until(Duration::from_secs(2), || self.count(200) >= passed);
        self.log()
    }

    fn count(&self, status: u16) -> usize {
        self.log().iter().filter(|l| l.status == status).count()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// One raw HTTPS request to nginx (rustls, with or without the client certificate), to see
/// what nginx itself answers. Returns (status, lower-case head, body).
fn raw_post(n: &Nginx, certs: &Certs, with_cert: bool, body: &[u8]) -> (u16, String, String) {
    use rustls::pki_types::ServerName;
    use std::io::{Read, Write};
    let config = certs.pki.client_config(with_cert.then_some(&certs.client));
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", n.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(body).unwrap();
    tls.flush().unwrap();
    let mut resp = Vec::new();
    // nginx may close without close_notify after an error answer: keep what arrived.
    let _ = tls.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// Starts nginx in front of `upstream`, or returns from the test when explicitly skipped.
macro_rules! nginx_or_skip {
    ($certs_dir:expr, $upstream:expr, $limits:expr) => {{
        let Some(bin) = nginx_binary() else {
            return;
        };
        let certs = make_certs($certs_dir);
        let n = Nginx::start(&bin, &certs, $upstream, $limits);
        (n, certs)
    }};
}

/// A test config through nginx: CA, and the client certificate when `with_cert`.
fn cfg(dir: &Path, n: &Nginx, certs: &Certs, with_cert: bool, extra: &[(&str, &str)]) -> Config {
    let mut c = config(dir, &n.url());
    c.set("http.proxy", "none").unwrap();
    c.set("tls.ca_file", &certs.files.ca).unwrap();
    if with_cert {
        c.set("tls.cert_file", &certs.files.client_cert).unwrap();
        c.set("tls.key_file", &certs.files.client_key).unwrap();
    }
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

fn log_range(b: &Buffer, r: std::ops::Range<u32>) {
    for i in r {
        b.log(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
    }
}

/// The envelopes of `instance`, checked: ids `<instance>-1` ..= `<instance>-n`, each exactly
/// once, in seq order, each `data` the record logged.
fn assert_exactly_once(env: &[serde_json::Value], instance: &str, n: u64) {
    let mine: Vec<&serde_json::Value> = env
        .iter()
        .filter(|e| {
            e["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("{instance}-")))
        })
        .collect();
    let ids: Vec<String> = mine
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (1..=n).map(|s| format!("{instance}-{s}")).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids: {ids:?}");
    assert_eq!(ids, want, "every record exactly once, in seq order");
    for e in mine {
        // Every test logs {"i":0}, {"i":1}, ... in order: record i has seq i + 1.
        assert_eq!(e["source"], "test-device");
        assert_eq!(
            e["data"]["i"].as_u64(),
            Some(e["seq"].as_u64().unwrap() - 1),
            "{e}"
        );
    }
}

fn assert_nothing_dead(b: &Buffer) {
    let st = b.status();
    assert_eq!(
        (st.dead_letter_records, st.dead_lettered_total),
        (0, 0),
        "nothing good is dead-lettered: {st:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// nginx requires a client certificate. With it everything arrives. Without it nginx completes
/// the handshake and answers every request 400 ("No required SSL certificate was sent"): the
/// batch is bisected, nothing is accepted, so nothing is dead-lettered and the records stay
/// pending (docs/reference.md, the wire). Reopened with the certificate, they all arrive once, in order.
#[test]
fn mutual_tls_through_nginx_keeps_records_until_the_certificate_is_configured() {
    let t0 = Instant::now();
    let srv = Server::always(200);
    let files = tempfile::tempdir().unwrap();
    let (n, certs) = nginx_or_skip!(files.path(), srv.port, GENEROUS);

    // With the client certificate: delivered.
    let dir_a = tempfile::tempdir().unwrap();
    let a = Buffer::open(&cfg(dir_a.path(), &n, &certs, true, &[]), None).unwrap();
    log_range(&a, 0..10);
    a.flush(Duration::from_secs(10)).unwrap();
    assert_exactly_once(&srv.delivered(), a.instance(), 10);
    assert_eq!(a.status().failed_attempts_total, 0, "{:?}", a.status());
    assert_nothing_dead(&a);
    a.close(Duration::from_secs(1)).unwrap();
    let upstream_before = srv.count();
    let log_a = n.log_after(upstream_before);
    let log_before = log_a.len();
    assert_eq!(log_before, upstream_before, "{log_a:?}");
    assert!(log_a.iter().all(|l| l.status == 200), "{log_a:?}");

    // Without it: 400 from nginx, records kept.
    let dir_b = tempfile::tempdir().unwrap();
    let ev = EventLog::new();
    let b = Buffer::open(&cfg(dir_b.path(), &n, &certs, false, &[]), ev.callback()).unwrap();
    let instance_b = b.instance().to_string();
    log_range(&b, 0..6);
    // A bisection round for 6 records is up to 11 requests; wait for several rounds. nginx
    // logs an answer before the worker has read it and counted the failure: wait for both.
    assert!(
        wait_until(Duration::from_secs(10), || n.count(400) >= 25
            && b.status().failed_attempts_total >= 25),
        "nginx answered 400 {} times; {:?}",
        n.count(400),
        b.status()
    );
    let st = b.status();
    assert_eq!(st.pending_records, 6, "{st:?}");
    assert_eq!(
        (st.delivered_total, st.last_http_status),
        (0, 400),
        "{st:?}"
    );
    assert_eq!(st.connectivity, CONNECTIVITY_OFFLINE, "{st:?}");
    assert!(st.failed_attempts_total >= 25, "{st:?}");
    assert_nothing_dead(&b);
    assert!(ev.of(EVENT_DEAD_LETTER).is_empty(), "{:?}", ev.all());
    assert!(wait_until(Duration::from_secs(1), || ev
        .of(EVENT_OFFLINE)
        .iter()
        .any(|e| e.http_status == 400)));
    assert_eq!(
        srv.count(),
        upstream_before,
        "nginx passed nothing upstream"
    );
    let refused = &n.log()[log_before..];
    eprintln!(
        "mTLS test: {} requests answered 400 in {:?}, {} failed attempts counted",
        refused.len(),
        t0.elapsed(),
        st.failed_attempts_total
    );
    assert!(refused.iter().all(|l| l.status == 400), "{refused:?}");
    assert_eq!(
        b.close(Duration::from_millis(100)).unwrap_err().code(),
        Code::Timeout
    );

    // Reconfigured with the certificate: the kept records arrive, then new ones after them.
    let b = Buffer::open(&cfg(dir_b.path(), &n, &certs, true, &[]), None).unwrap();
    assert_eq!(b.instance(), instance_b);
    assert_eq!(b.status().pending_at_open, 6);
    log_range(&b, 6..9);
    b.flush(Duration::from_secs(10)).unwrap();
    assert_exactly_once(&srv.delivered(), &instance_b, 9);
    let st = b.status();
    assert_eq!((st.pending_records, st.delivered_total), (0, 9), "{st:?}");
    assert_nothing_dead(&b);
    b.close(Duration::from_secs(1)).unwrap();

    // What nginx answers a client without a certificate (after the checks above: it is one
    // more 400 in the log).
    let (status, _, body) = raw_post(&n, &certs, false, b"[]");
    assert_eq!(status, 400);
    assert!(
        body.contains("No required SSL certificate was sent"),
        "{body}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

/// nginx closes a connection after 3 requests (`Connection: close` on the third answer) and
/// when it has been idle for 1 s. Batches go in rounds separated by pauses around and beyond
/// the idle timeout: a request on a connection nginx closed while idle is sent again on a new
/// one and is no failed attempt; everything arrives once, in order.
#[test]
fn keepalive_connections_closed_by_nginx_cost_no_failed_attempts() {
    let t0 = Instant::now();
    let srv = Server::always(200);
    let files = tempfile::tempdir().unwrap();
    let (n, certs) = nginx_or_skip!(files.path(), srv.port, GENEROUS);
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &n,
        &certs,
        true,
        &[("batch.max_records", "4"), ("batch.linger_ms", "5000")],
    );
    let b = Buffer::open(&c, None).unwrap();
    // Rounds of 1, 2 or 3 requests (4 records a request), each followed by a pause beyond
    // the idle timeout or close to it (nginx may close as the request goes). A round of 1 or 2
    // requests leaves the connection open, for nginx to close while idle.
    let rounds: [(u32, u64); 9] = [
        (4, 1300),
        (8, 1000),
        (4, 1400),
        (4, 990),
        (10, 1200),
        (8, 1020),
        (4, 1500),
        (4, 1010),
        (10, 0),
    ];
    let mut logged = 0;
    for (round, (records, pause)) in rounds.iter().enumerate() {
        log_range(&b, logged..logged + records);
        logged += records;
        b.flush(Duration::from_secs(10)).unwrap();
        let st = b.status();
        assert_eq!(st.failed_attempts_total, 0, "round {round}: {st:?}");
        std::thread::sleep(Duration::from_millis(*pause));
    }

    assert_exactly_once(&srv.delivered(), b.instance(), logged as u64);
    let st = b.status();
    assert_eq!(
        (st.failed_attempts_total, st.consecutive_failures),
        (0, 0),
        "{st:?}"
    );
    assert_eq!(
        (st.pending_records, st.last_http_status),
        (0, 200),
        "{st:?}"
    );
    assert_eq!(st.connectivity, CONNECTIVITY_ONLINE);
    assert_nothing_dead(&b);

    // What nginx saw: only 200s, never more than 3 requests on a connection, connections
    // that reached 3 (nginx closed them), and connections left idle with fewer (nginx closed
    // them after 1 s).
    let log = n.log_after(srv.count());
    assert!(log.iter().all(|l| l.status == 200), "{log:?}");
    assert_eq!(log.len(), srv.count(), "every request reached the receiver");
    // At least one request a round and four records a request; a flush may send a partial
    // batch when a record is committed just after its batch was formed.
    assert!(log.len() >= 1 + 2 + 1 + 1 + 3 + 2 + 1 + 1 + 3, "{log:?}");
    let mut per_conn: std::collections::BTreeMap<u64, u64> = Default::default();
    for l in &log {
        let n = per_conn.entry(l.conn).or_default();
        *n += 1;
        assert_eq!(l.conn_requests, *n, "{log:?}");
    }
    assert!(per_conn.values().all(|&n| n <= 3), "{per_conn:?}");
    let full = per_conn.values().filter(|&&n| n == 3).count();
    // The last connection is still open; every earlier one with fewer than 3 requests was
    // closed by nginx while idle (a pause of 990-1020 ms may also beat nginx's timer, and the
    // connection is then reused: both are fine).
    let last = log.last().unwrap().conn;
    let idle_closed = per_conn
        .iter()
        .filter(|(&c, &n)| c != last && n < 3)
        .count();
    assert!(full >= 2, "{per_conn:?}");
    assert!(idle_closed >= 3, "{per_conn:?}");
    eprintln!("keep-alive test: requests per connection {per_conn:?}");
    b.close(Duration::from_secs(1)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

/// nginx's client_max_body_size (4 KiB) answers 413 to larger batches before the receiver sees
/// them: the batch is split in halves until it passes, and every record arrives once, in order;
/// none is dead-lettered.
#[test]
fn bodies_over_nginx_client_max_body_size_are_split_until_they_pass() {
    let t0 = Instant::now();
    let srv = Server::always(200);
    let files = tempfile::tempdir().unwrap();
    let (n, certs) = nginx_or_skip!(
        files.path(),
        srv.port,
        Limits {
            body: "4k",
            ..GENEROUS
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &n,
        &certs,
        true,
        &[("batch.max_records", "64"), ("batch.linger_ms", "5000")],
    );
    let ev = EventLog::new();
    let b = Buffer::open(&c, ev.callback()).unwrap();
    // About 300 bytes an envelope: 64 of them are about 19 KiB, 8 about 2.4 KiB.
    let pad = "p".repeat(200);
    for i in 0..128 {
        b.log(format!("{{\"i\":{i},\"pad\":\"{pad}\"}}").as_bytes())
            .unwrap();
    }
    b.flush(Duration::from_secs(20)).unwrap();

    assert_exactly_once(&srv.delivered(), b.instance(), 128);
    let st = b.status();
    assert_eq!((st.pending_records, st.delivered_total), (0, 128), "{st:?}");
    assert_nothing_dead(&b);
    assert!(ev.of(EVENT_DEAD_LETTER).is_empty(), "{:?}", ev.all());

    // nginx logs a 413 once the client has closed that connection (lingering close).
    wait_until(Duration::from_secs(2), || {
        n.count(413) as u64 >= st.failed_attempts_total
    });
    let log = n.log_after(srv.count());
    let too_large: Vec<&Line> = log.iter().filter(|l| l.status == 413).collect();
    assert!(!too_large.is_empty(), "nginx never answered 413: {log:?}");
    assert!(too_large.iter().all(|l| l.content_length > 4096), "{log:?}");
    let rejected_bytes: u64 = too_large.iter().map(|l| l.content_length).sum();
    let accepted_bytes: u64 = log
        .iter()
        .filter(|l| l.status == 200)
        .map(|l| l.content_length)
        .sum();
    eprintln!(
        "413 test: {} x 413 ({rejected_bytes} body bytes), {} x 200 ({accepted_bytes} body bytes)",
        too_large.len(),
        log.len() - too_large.len()
    );
    assert!(log
        .iter()
        .all(|l| l.status == 413 || (l.status == 200 && l.content_length <= 4096)));
    assert_eq!(
        st.failed_attempts_total,
        too_large.len() as u64,
        "each 413 is one failed attempt: {st:?}"
    );
    // The receiver got only what nginx let through, each request once.
    assert_eq!(srv.count(), log.len() - too_large.len());
    assert!(srv.hits().iter().all(|h| h.body.len() <= 4096));
    // Halving: 64 -> 32 -> 16 -> 8 records a request, 15 requests for 64 records.
    assert!(log.len() <= 2 * 15 + 10, "{} requests: {log:?}", log.len());
    b.close(Duration::from_secs(1)).unwrap();

    // nginx's own 413, not the receiver's.
    let count = srv.count();
    let (status, _, body) = raw_post(&n, &certs, true, &[b' '; 5000]);
    assert_eq!(status, 413, "{body}");
    assert_eq!(srv.count(), count);
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

/// nginx's limit_req (5 requests a second, no burst) answers 429 without Retry-After: the
/// same batch is retried after backoff, everything arrives once, in order, and the number of
/// requests nginx saw stays bounded (no retry storm).
#[test]
fn nginx_rate_limit_429_is_retried_with_backoff_without_a_storm() {
    let t0 = Instant::now();
    let srv = Server::always(200);
    let files = tempfile::tempdir().unwrap();
    let (n, certs) = nginx_or_skip!(
        files.path(),
        srv.port,
        Limits {
            rate: "5r/s",
            burst: 0,
            ..GENEROUS
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        dir.path(),
        &n,
        &certs,
        true,
        &[
            ("batch.max_records", "5"),
            ("batch.linger_ms", "5000"),
            ("retry.initial_ms", "50"),
            ("retry.max_ms", "400"),
        ],
    );
    let ev = EventLog::new();
    let b = Buffer::open(&c, ev.callback()).unwrap();
    let start = Instant::now();
    log_range(&b, 0..40);
    b.flush(Duration::from_secs(20)).unwrap();
    let took = start.elapsed();

    assert_exactly_once(&srv.delivered(), b.instance(), 40);
    let st = b.status();
    assert_eq!(
        (st.pending_records, st.last_http_status),
        (0, 200),
        "{st:?}"
    );
    assert_nothing_dead(&b);

    let log = n.log_after(srv.count());
    let limited = log.iter().filter(|l| l.status == 429).count();
    let passed = log.iter().filter(|l| l.status == 200).count();
    assert_eq!(limited + passed, log.len(), "{log:?}");
    assert!(limited > 0, "the rate limit never applied: {log:?}");
    assert!(passed >= 8, "40 records in batches of 5 at most: {log:?}");
    assert_eq!(srv.count(), passed, "nginx passed only the accepted ones");
    assert_eq!(st.failed_attempts_total, limited as u64, "{st:?}");
    // 8 batches at 5 a second take about 1.4 s; with backoff (ceilings 50, 100, 200, 400 ms,
    // full jitter) a few attempts fit in each 200 ms gap. A storm would be hundreds.
    assert!(
        log.len() <= passed * 10,
        "{} requests in {took:?}: {log:?}",
        log.len()
    );
    // Every retry of a batch carries the key of its first attempt.
    let keys: BTreeSet<&str> = log.iter().map(|l| l.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), passed, "{keys:?}");
    // The waits after 429 are backoff, not a loop: on average well above a round trip.
    let mut gaps = Vec::new();
    for w in log.windows(2) {
        if w[0].status == 429 {
            gaps.push(w[1].msec - w[0].msec);
        }
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    eprintln!(
        "429 test: {limited} x 429, {passed} x 200 in {took:?}; mean wait after a 429: {:.0} ms",
        mean * 1000.0
    );
    assert!(mean >= 0.015, "mean wait after a 429: {mean} s; {gaps:?}");
    assert!(wait_until(Duration::from_secs(1), || ev
        .of(EVENT_OFFLINE)
        .iter()
        .any(|e| e.http_status == 429)));
    b.close(Duration::from_secs(1)).unwrap();

    // nginx's 429 carries no Retry-After: two requests at once, the second is limited.
    let _ = raw_post(&n, &certs, true, b"[]");
    let (status, head, _) = raw_post(&n, &certs, true, b"[]");
    assert_eq!(status, 429, "{head}");
    assert!(!head.contains("retry-after"), "{head}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

/// The receiver behind nginx is down: nginx answers 502. Records stay pending (nothing is
/// dead-lettered), and arrive once, in order, when the receiver comes back on its port.
#[test]
fn upstream_down_behind_nginx_502_keeps_records_until_it_returns() {
    let t0 = Instant::now();
    let mut rx = Server::receiver();
    rx.down();
    let files = tempfile::tempdir().unwrap();
    let (n, certs) = nginx_or_skip!(files.path(), rx.port, GENEROUS);
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(&cfg(dir.path(), &n, &certs, true, &[]), None).unwrap();
    log_range(&b, 0..10);
    assert!(
        wait_until(Duration::from_secs(10), || n.count(502) >= 5),
        "nginx answered 502 {} times: {}",
        n.count(502),
        n.diagnostics()
    );
    let st = b.status();
    assert_eq!(st.pending_records, 10, "{st:?}");
    assert_eq!(
        (st.delivered_total, st.last_http_status),
        (0, 502),
        "{st:?}"
    );
    assert_eq!(st.connectivity, CONNECTIVITY_OFFLINE);
    assert_nothing_dead(&b);
    assert!(n.log().iter().all(|l| l.status == 502));

    // The receiver comes back on the same port.
    rx.up();
    log_range(&b, 10..15);
    b.flush(Duration::from_secs(10)).unwrap();
    let got = rx.wait_delivered(15, Duration::from_secs(1));
    assert_exactly_once(&got, b.instance(), 15);
    let st = b.status();
    assert_eq!((st.pending_records, st.delivered_total), (0, 15), "{st:?}");
    assert_eq!(st.connectivity, CONNECTIVITY_ONLINE);
    assert_nothing_dead(&b);
    // Every request nginx passed on was answered 200 by the receiver, and counted once.
    let log = n.log_after(rx.count());
    let seen: Vec<(u16, usize)> = rx
        .hits()
        .iter()
        .map(|r| (r.status, r.envelopes().len()))
        .collect();
    assert_eq!(
        log.iter().filter(|l| l.status == 200).count(),
        seen.len(),
        "{log:?} {seen:?} {}",
        n.diagnostics()
    );
    b.close(Duration::from_secs(1)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}
