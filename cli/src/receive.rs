//! `edgebuf receive`: a reference receiver for edgebuf's wire format. Its HTTP server, bounded in
//! connections, threads and memory, is [`http`].

mod http;

use crate::{plural, printable, Failure, Outcome};
use clap::Args;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Run a reference receiver: accepts edgebuf batches, keeps each new envelope once.
///
/// Accepts POSTs on any path whose body is a JSON array of envelopes or NDJSON (one envelope
/// per line), plain or with `Content-Encoding: gzip` or `zstd`. Each envelope not seen before
/// (deduplicated on (source, id), including the envelopes already in --out at start, so a
/// restarted receiver keeps deduplicating) is appended as one line to --out, verbatim; the
/// answer is 200. A malformed body is refused with 400 and nothing of it is kept.
///
/// While --control-file contains "down", or after SIGUSR1 (which toggles), every POST is
/// answered with --fail-status and nothing is kept: an outage without a restart.
/// `GET /stats` answers the counters as JSON. On SIGTERM or SIGINT it prints one line of
/// counters to stderr and exits 0. It binds only to the address given.
///
/// It holds at most 256 connections and handles requests on 4 threads; a request whose head
/// does not arrive within 10 s, or whose body stops arriving for 10 s, is answered 408.
#[derive(Args)]
pub struct ReceiveArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port; the address is
    /// printed to stderr at start).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// File each new envelope is appended to, one JSON line each.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Status answered while failing (control file says "down", or toggled by SIGUSR1).
    #[arg(long, value_name = "CODE", default_value_t = 503,
          value_parser = clap::value_parser!(u16).range(300..=599))]
    fail_status: u16,
    /// Fail every POST while this file exists and contains "down".
    #[arg(long, value_name = "FILE")]
    control_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (before and after gunzip); larger is 413, from
    /// the Content-Length before the body is read. Bodies held at once stay within about this.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_body: u64,
    /// Print one line per request to stderr.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    /// POST requests.
    requests: u64,
    /// Envelopes in accepted requests.
    received: u64,
    /// New envelopes appended to the out file by this run.
    unique: u64,
    /// Envelopes already seen (in this run or in the out file at start).
    duplicates: u64,
    /// Requests answered with --fail-status.
    failed: u64,
    /// Requests refused as malformed (4xx).
    bad: u64,
}

impl Counters {
    fn line(&self, loaded: u64) -> String {
        format!(
            "requests={} received={} unique={} duplicates={} failed={} bad={} loaded={loaded}",
            self.requests, self.received, self.unique, self.duplicates, self.failed, self.bad
        )
    }

    fn json(&self, loaded: u64) -> String {
        serde_json::json!({
            "requests": self.requests, "received": self.received, "unique": self.unique,
            "duplicates": self.duplicates, "failed": self.failed, "bad": self.bad,
            "loaded": loaded,
        })
        .to_string()
    }
}

struct State {
    out: File,
    seen: HashSet<(String, String)>,
    loaded: u64,
    c: Counters,
}

struct Shared {
    state: Mutex<State>,
    /// Held while a gzip or zstd body is inflated and ingested, so that one inflated body at a
    /// time is in memory (a small compressed body can inflate to --max-body).
    inflating: Mutex<()>,
    /// Toggled by SIGUSR1.
    failing: AtomicBool,
    args: ReceiveArgs,
}

/// Loads the (source, id) keys of an existing out file, and makes sure it ends with a
/// newline (a line cut short by a crash is skipped, and the next one starts afresh).
fn load(out: &mut File, path: &Path) -> Result<(HashSet<(String, String)>, u64), Failure> {
    let fail = |e: io::Error| Failure::Other(format!("{}: {e}", super::shown(path)));
    let mut seen = HashSet::new();
    let (mut loaded, mut skipped) = (0u64, 0u64);
    out.seek(SeekFrom::Start(0)).map_err(fail)?;
    for line in BufReader::new(&mut *out).split(b'\n') {
        let line = line.map_err(fail)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(&line) {
            Ok(v) => match (v["source"].as_str(), v["id"].as_str()) {
                (Some(s), Some(i)) => {
                    if seen.insert((s.to_string(), i.to_string())) {
                        loaded += 1;
                    }
                }
                _ => skipped += 1,
            },
            Err(_) => skipped += 1,
        }
    }
    let len = out.seek(SeekFrom::End(0)).map_err(fail)?;
    if len > 0 {
        let mut last = [0u8; 1];
        out.seek(SeekFrom::Start(len - 1)).map_err(fail)?;
        out.read_exact(&mut last).map_err(fail)?;
        if last[0] != b'\n' {
            // Opened for append: this goes to the end whatever the position.
            out.write_all(b"\n").map_err(fail)?;
        }
    }
    if skipped > 0 {
        eprintln!(
            "edgebuf receive: skipped {skipped} unreadable line(s) of {}",
            super::shown(path)
        );
    }
    Ok((seen, loaded))
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

pub fn run(args: ReceiveArgs) -> Outcome {
    // Blocked before any thread starts, so every thread inherits the mask and the signal
    // thread below is the only one that takes them.
    let set = block_signals();
    let mut out = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&args.out)
        .map_err(|e| Failure::Other(format!("{}: {e}", super::shown(&args.out))))?;
    let (seen, loaded) = load(&mut out, &args.out)?;
    let listener = TcpListener::bind(args.listen)
        .map_err(|e| Failure::Other(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| args.listen.to_string());
    eprintln!(
        "edgebuf receive: listening on http://{addr}/ (out {}, {} already in it)",
        super::shown(&args.out),
        plural(loaded, "envelope", "envelopes")
    );
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            out,
            seen,
            loaded,
            c: Counters::default(),
        }),
        inflating: Mutex::new(()),
        failing: AtomicBool::new(false),
        args,
    });
    {
        let sh = Arc::clone(&shared);
        std::thread::spawn(move || signals(set, &sh));
    }
    http::serve(listener, shared.args.max_body, shared)
        .map_err(|e| Failure::Other(format!("edgebuf receive: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn signals(set: libc::sigset_t, sh: &Shared) {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid signal set; `sig` a valid out pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        if sig == libc::SIGUSR1 {
            let now = !sh.failing.fetch_xor(true, Ordering::SeqCst);
            eprintln!(
                "edgebuf receive: SIGUSR1: {}",
                if now {
                    format!("failing (answering {})", sh.args.fail_status)
                } else {
                    "accepting".to_string()
                }
            );
            continue;
        }
        // SIGTERM or SIGINT: wait for a request being written, then report and exit.
        let st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = st.out.sync_data();
        eprintln!("edgebuf receive: stopped; {}", st.c.line(st.loaded));
        std::process::exit(0);
    }
}

fn is_failing(sh: &Shared) -> bool {
    if sh.failing.load(Ordering::SeqCst) {
        return true;
    }
    match &sh.args.control_file {
        Some(f) => std::fs::read_to_string(f)
            .map(|s| s.contains("down"))
            .unwrap_or(false),
        None => false,
    }
}

fn error_body(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

impl http::Handler for Shared {
    fn handle(&self, req: &http::Request) -> (u16, String) {
        handle(self, req)
    }

    /// A request the server answered itself: 413 (the body is over --max-body), a malformed
    /// body, a timeout.
    fn refused(&self, method: &str, path: &str, code: u16, body: &str) {
        if method != "POST" {
            return;
        }
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.c.requests += 1;
            if (400..500).contains(&code) {
                st.c.bad += 1;
            }
        }
        if self.args.verbose {
            // The path and the message come from the client: control characters escaped.
            eprintln!(
                "edgebuf receive: POST {} -> {code} (0 envelopes): {}",
                printable(path),
                printable(body)
            );
        }
    }
}

fn handle(sh: &Shared, req: &http::Request) -> (u16, String) {
    let verbose = sh.args.verbose;
    match req.method.as_str() {
        "POST" => {}
        "GET" if req.path == "/stats" => {
            let st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
            return (200, st.c.json(st.loaded));
        }
        "GET" | "HEAD" => return (200, "{\"ok\":true}".into()),
        _ => return (405, error_body("only POST (and GET /stats)")),
    }
    // The server read the whole body (also when failing, so the connection stays usable) and
    // refused it with 413 when over --max-body.
    let max = sh.args.max_body;
    let failing = is_failing(sh);
    let (code, body, n) = if failing {
        let code = sh.args.fail_status;
        (code, error_body("failing on purpose (edgebuf receive)"), 0)
    } else {
        let compressed = !matches!(encoding(req).as_deref(), None | Some("") | Some("identity"));
        let _one = compressed.then(|| sh.inflating.lock().unwrap_or_else(|p| p.into_inner()));
        match decode(req, max).and_then(|plain| ingest(sh, &plain)) {
            Ok((n, new, dups)) => (
                200,
                serde_json::json!({"accepted": n, "new": new, "duplicates": dups}).to_string(),
                n,
            ),
            Err((code, msg)) => (code, error_body(&msg), 0),
        }
    };
    {
        let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
        st.c.requests += 1;
        if failing && code == sh.args.fail_status {
            st.c.failed += 1;
        } else if (400..500).contains(&code) {
            st.c.bad += 1;
        }
    }
    if verbose {
        eprintln!(
            "edgebuf receive: POST {} -> {code} ({} envelopes){}",
            printable(&req.path),
            n,
            if code >= 400 && !failing {
                format!(": {}", printable(&body))
            } else {
                String::new()
            }
        );
    }
    (code, body)
}

type HttpError = (u16, String);

fn encoding(req: &http::Request) -> Option<String> {
    req.content_encoding
        .as_ref()
        .map(|v| v.trim().to_ascii_lowercase())
}

/// The largest zstd window a body may ask for: 8 MiB (2^23), the limit that HTTP's
/// `Content-Encoding: zstd` sets (RFC 9659). Without it a small hostile frame could make the
/// decoder allocate a 128 MiB window, past the memory --max-body bounds.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The body, inflated when gzip or zstd (borrowed when not).
fn decode(req: &http::Request, max: u64) -> Result<Cow<'_, [u8]>, HttpError> {
    let raw = &req.body[..];
    match encoding(req) {
        None => Ok(Cow::Borrowed(raw)),
        Some(e) if e.is_empty() || e == "identity" => Ok(Cow::Borrowed(raw)),
        Some(e) if e == "gzip" || e == "x-gzip" => {
            inflate(flate2::read::GzDecoder::new(raw), max, "gzip")
        }
        Some(e) if e == "zstd" => {
            let unreadable =
                |e: std::io::Error| (400, format!("the zstd body does not decompress: {e}"));
            let mut d = zstd::stream::read::Decoder::with_buffer(raw).map_err(unreadable)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(unreadable)?;
            inflate(d, max, "zstd")
        }
        Some(e) => Err((415, format!("Content-Encoding {e} is not supported"))),
    }
}

/// Reads a decoder's output, refusing with 413 past `max` bytes (it never holds more than
/// `max` + 1 of them).
fn inflate(decoder: impl Read, max: u64, name: &str) -> Result<Cow<'static, [u8]>, HttpError> {
    let mut plain = Vec::new();
    decoder
        .take(max + 1)
        .read_to_end(&mut plain)
        .map_err(|e| (400, format!("the {name} body does not decompress: {e}")))?;
    if plain.len() as u64 > max {
        return Err((
            413,
            "the decompressed body is larger than --max-body".into(),
        ));
    }
    Ok(Cow::Owned(plain))
}

/// The byte spans of the elements of a top-level JSON array (None when `body` is not one).
pub(super) fn array_elements(body: &[u8]) -> Option<Vec<&[u8]>> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'[' {
        return None;
    }
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    let mut elems = Vec::new();
    let mut elem_start = start + 1;
    for (i, &b) in body.iter().enumerate().skip(start) {
        if in_str {
            match b {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    let e = trim(&body[elem_start..i]);
                    if !e.is_empty() || !elems.is_empty() {
                        elems.push(e);
                    }
                    if !body[i + 1..].iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    return Some(elems);
                }
            }
            b',' if depth == 1 => {
                elems.push(trim(&body[elem_start..i]));
                elem_start = i + 1;
            }
            _ => {}
        }
    }
    None
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e]
}

/// Checks one envelope of the wire format; returns (source, id).
fn envelope(bytes: &[u8]) -> Result<(String, String), String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("an envelope must be a JSON object")?;
    let id = o
        .get("id")
        .and_then(Value::as_str)
        .ok_or("\"id\" (a string) is missing")?;
    let seq = o
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("\"seq\" (an integer) is missing")?;
    o.get("ts_ms")
        .and_then(Value::as_i64)
        .ok_or("\"ts_ms\" (an integer) is missing")?;
    let source = o
        .get("source")
        .and_then(Value::as_str)
        .ok_or("\"source\" (a string) is missing")?;
    if !o.contains_key("data") {
        return Err("\"data\" is missing".into());
    }
    if !id.ends_with(&format!("-{seq}")) {
        return Err(format!("\"id\" {id:?} does not end with -<seq> ({seq})"));
    }
    Ok((source.to_string(), id.to_string()))
}

/// Checks every envelope of `body`, then appends the new ones: (envelopes, new, duplicates).
fn ingest(sh: &Shared, body: &[u8]) -> Result<(u64, u64, u64), HttpError> {
    let elems: Vec<&[u8]> = match array_elements(body) {
        Some(e) => e,
        None => body
            .split(|&b| b == b'\n')
            .map(trim)
            .filter(|l| !l.is_empty())
            .collect(),
    };
    let mut envs = Vec::with_capacity(elems.len());
    for (i, e) in elems.iter().enumerate() {
        let key = envelope(e).map_err(|m| (400, format!("envelope {}: {m}", i + 1)))?;
        envs.push((key, *e));
    }
    let n = envs.len() as u64;
    let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
    let (mut new, mut dups) = (0u64, 0u64);
    // Written a piece at a time, so that a large body is not copied whole.
    let mut out = Vec::new();
    let mut unwritten = Vec::new();
    for (key, bytes) in envs {
        if st.seen.contains(&key) {
            dups += 1;
            continue;
        }
        // One envelope per line: CR and LF (only possible as insignificant whitespace in
        // valid JSON) become spaces, as edgebuf's own ndjson does.
        out.extend(bytes.iter().map(|&b| match b {
            b'\n' | b'\r' => b' ',
            b => b,
        }));
        out.push(b'\n');
        unwritten.push(key.clone());
        st.seen.insert(key);
        new += 1;
        if out.len() >= WRITE_PIECE {
            write_out(&mut st, &mut out, &mut unwritten)?;
        }
    }
    write_out(&mut st, &mut out, &mut unwritten)?;
    st.c.received += n;
    st.c.duplicates += dups;
    Ok((n, new, dups))
}

/// How much of the out file's new lines is written at once.
const WRITE_PIECE: usize = 1 << 20;

/// Appends `out` to the out file. When that fails, its envelopes are forgotten (a retry keeps
/// them); those of earlier pieces are in the file and stay seen.
fn write_out(
    st: &mut State,
    out: &mut Vec<u8>,
    unwritten: &mut Vec<(String, String)>,
) -> Result<(), HttpError> {
    if out.is_empty() {
        return Ok(());
    }
    if let Err(e) = st.out.write_all(out) {
        for k in unwritten.iter() {
            st.seen.remove(k);
        }
        return Err((500, format!("cannot write the out file: {e}")));
    }
    st.c.unique += unwritten.len() as u64;
    out.clear();
    unwritten.clear();
    Ok(())
}
