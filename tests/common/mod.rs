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

/// A receiver answering with `status` (200 by default), recording every request.
pub struct Receiver {
    pub port: u16,
    pub status: Arc<AtomicU16>,
    /// Extra response header (Retry-After) while set.
    pub retry_after: Arc<Mutex<Option<String>>>,
    pub requests: Arc<Mutex<Vec<Request>>>,
    pub hits: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    /// Starts on a given port (0 = any), e.g. to come back on the port of an outage.
    pub fn start_on(port: u16) -> Receiver {
        let server = tiny_http::Server::http(("127.0.0.1", port)).expect("bind 127.0.0.1");
        let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
        let status = Arc::new(AtomicU16::new(200));
        let retry_after = Arc::new(Mutex::new(None::<String>));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, ra, rq, h, st) = (
            Arc::clone(&status),
            Arc::clone(&retry_after),
            Arc::clone(&requests),
            Arc::clone(&hits),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let mut req = match server.recv_timeout(Duration::from_millis(20)) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(_) => break,
                };
                let mut body = Vec::new();
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
                let code = s.load(Ordering::SeqCst);
                h.fetch_add(1, Ordering::SeqCst);
                rq.lock().unwrap().push(Request {
                    headers,
                    body,
                    status: code,
                });
                let mut resp = tiny_http::Response::from_string("ok").with_status_code(code);
                if let Some(v) = ra.lock().unwrap().clone() {
                    if let Ok(hd) = tiny_http::Header::from_bytes("Retry-After", v.as_bytes()) {
                        resp.add_header(hd);
                    }
                }
                let _ = req.respond(resp);
            }
        });
        Receiver {
            port,
            status,
            retry_after,
            requests,
            hits,
            stop,
            thread: Some(thread),
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
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
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

/// A free port with nothing listening (for an endpoint that is down).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
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
