//! Test support, shared by tests/*.rs and cli/tests/cli.rs: the one scripted HTTP test server
//! (`http`), the one set of test certificates (`pki`), ports that stay dead, bounded waits, an
//! event recorder, and helpers to build configurations in temporary directories.
#![allow(dead_code)]

use edgebuf::Config;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "http.rs"]
pub mod http;
#[path = "pki.rs"]
pub mod pki;
#[allow(unused_imports)]
pub use http::{Act, Hit, Server};
#[allow(unused_imports)]
pub use pki::{other_ca_pem, write_file, ClientCert, Pki, PkiFiles};

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

/// A port with nothing listening, ever (an endpoint that is down for good): a socket stays
/// bound to it, without SO_REUSEADDR and without listening, for the life of the process, so
/// connections are refused and no test can bind the port, not even with SO_REUSEADDR. An
/// endpoint that goes down and comes back on its port is `Server::down` and `Server::up`.
pub fn dead_port() -> u16 {
    let (fd, port) = bound_socket(0, false);
    // Never closed: the port is not handed back.
    std::mem::forget(fd);
    port
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
// Bounded waits and an event recorder.

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
