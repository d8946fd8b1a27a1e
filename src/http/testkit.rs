//! Test helpers of the HTTP side: a small HTTP/1.1 server on 127.0.0.1 that follows a script,
//! one connection at a time, and a sender configured for it.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{RecordRef, Sender};
use crate::config::{Config, ProxySetting};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub(super) struct Req {
    pub(super) conn: usize,
    pub(super) line: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Req {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// What the server does with one request.
pub(super) enum Act {
    /// Write these bytes and keep the connection open.
    Send(Vec<u8>),
    /// Write these bytes, keep the connection idle for this long, then close it.
    SendThenCloseAfter(Vec<u8>, Duration),
    /// Write these bytes (maybe a partial answer) and close.
    SendAndClose(Vec<u8>),
    /// Close without answering.
    Close,
    /// Never answer (until the server stops).
    Hang,
    /// Close the connection with the next request unread, so that it is reset.
    Reset,
}

pub(super) fn response(status: u16, extra: &str) -> Vec<u8> {
    let body = "{\"ok\":true}";
    format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub(super) struct Server {
    pub(super) addr: SocketAddr,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) reqs: Arc<Mutex<Vec<Req>>>,
    pub(super) thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves requests in order with `acts`; a request beyond the script gets a 200.
    pub(super) fn start(acts: Vec<Act>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let (stop2, reqs2) = (stop.clone(), reqs.clone());
        let thread = std::thread::spawn(move || {
            let mut acts: VecDeque<Act> = acts.into();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut conn = 0;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        conn += 1;
                        serve(stream, conn, &mut acts, &stop2, &reqs2, deadline);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            addr,
            stop,
            reqs,
            thread: Some(thread),
        }
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    pub(super) fn requests(&self) -> Vec<Req> {
        self.reqs.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    conn: usize,
    acts: &mut VecDeque<Act>,
    stop: &AtomicBool,
    reqs: &Mutex<Vec<Req>>,
    deadline: Instant,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        if matches!(acts.front(), Some(Act::Reset)) {
            // Wait for the next request to arrive, then close without reading it: the
            // unread data makes the kernel answer with a reset.
            let mut probe = [0u8; 1];
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match writer.peek(&mut probe) {
                    Ok(_) => break,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            acts.pop_front();
            return;
        }
        let Some(req) = read_request(&mut reader, conn, stop, deadline) else {
            return;
        };
        reqs.lock().expect("lock").push(req);
        match acts
            .pop_front()
            .unwrap_or_else(|| Act::Send(response(200, "")))
        {
            Act::Send(b) => {
                let _ = writer.write_all(&b);
            }
            Act::SendThenCloseAfter(b, idle) => {
                let _ = writer.write_all(&b);
                std::thread::sleep(idle);
                return;
            }
            Act::SendAndClose(b) => {
                let _ = writer.write_all(&b);
                return;
            }
            Act::Close | Act::Reset => return,
            Act::Hang => {
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return;
            }
        }
    }
}

/// Reads one request; None when the client closed, the server stops or time runs out.
pub(super) fn read_request<R: BufRead>(
    r: &mut R,
    conn: usize,
    stop: &AtomicBool,
    deadline: Instant,
) -> Option<Req> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline || head.len() > 65536 {
            return None;
        }
        let mut byte = [0u8; 1];
        match r.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => head.push(byte[0]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        if Instant::now() > deadline {
            return None;
        }
        match r.read(&mut body[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
    }
    Some(Req {
        conn,
        line,
        headers,
        body,
    })
}

// -----------------------------------------------------------------------------------------

pub(super) const INSTANCE: &str = "3f9c2a7e1b4d8c60";

/// A config for tests; the real Config has more fields, all defaulted.
#[allow(clippy::field_reassign_with_default)]
pub(super) fn cfg(endpoint: &str) -> Config {
    let mut c = Config::default();
    c.endpoint = Some(endpoint.to_string());
    c.http_proxy = ProxySetting::None;
    c.http_timeout_ms = 5000;
    c.http_connect_timeout_ms = 2000;
    c
}

/// A sender whose source is "cam-07" (source.id is not one of the config items used here).
pub(super) fn sender(c: &Config) -> Sender {
    let mut s = Sender::new(c).expect("sender");
    s.set_source("cam-07");
    s
}

pub(super) fn recs(datas: &[&'static str]) -> Vec<RecordRef<'static>> {
    datas
        .iter()
        .enumerate()
        .map(|(i, d)| RecordRef {
            instance: INSTANCE,
            seq: 42 + i as u64,
            ts_ms: 1_764_320_000_123 + i as i64,
            data: d.as_bytes(),
        })
        .collect()
}
