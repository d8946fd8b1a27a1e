//! Test support, shared by tests/*.rs and cli/tests/cli.rs: the one scripted HTTP test server
//! (`http`), the one set of test certificates (`pki`), ports that stay dead, bounded waits, an
//! event recorder, and helpers to build configurations in temporary directories.
#![allow(dead_code)]

use edgebuf::Config;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[path = "http.rs"]
pub mod http;
#[path = "otlp_json.rs"]
pub mod otlp_json;
#[path = "pki.rs"]
pub mod pki;
#[allow(unused_imports)]
pub use http::{bound_socket, envelopes, seqs, wait_until, Act, Hit, Server};
#[allow(unused_imports)]
pub use pki::{other_ca_pem, write_file, ClientCert, Pki, PkiFiles};

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

// ---------------------------------------------------------------------------------------------
// An event recorder.

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
