//! `edgebuf receive` run as a program, for the tool's tests (`mod receiver;` in each).
#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_edgebuf");

/// A running `edgebuf receive`; its stderr is collected.
pub struct Receive {
    child: Child,
    pub port: u16,
    err: Arc<Mutex<String>>,
    out: PathBuf,
}

impl Receive {
    pub fn start(out: &Path, extra: &[&str]) -> Receive {
        Receive::start_on(0, out, extra)
    }

    pub fn start_on(port: u16, out: &Path, extra: &[&str]) -> Receive {
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(BIN)
            .args([
                "receive",
                "--listen",
                &listen,
                "--out",
                out.to_str().expect("a UTF-8 path"),
            ])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start edgebuf receive");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        let port: u16 = first
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        let collected = Arc::new(Mutex::new(first));
        let c2 = Arc::clone(&collected);
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
            c2.lock().unwrap().push_str(&rest);
        });
        Receive {
            child,
            port,
            err: collected,
            out: out.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection to it, with a 10 s read timeout.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    /// SIGTERM; returns the exit code and everything it printed to stderr.
    pub fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: signals a child process of this test.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while !self.err.lock().unwrap().contains("stopped;") && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = self.err.lock().unwrap().clone();
        (st.code(), err)
    }

    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Receive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
