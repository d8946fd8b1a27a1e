//! The edgebuf benchmark: measures edgebuf and its baselines side by side in one run and
//! prints one table. Run: `cargo bench --bench edgebuf_bench` (EDGEBUF_BENCH_ONLY=drain,sync runs
//! only those parts; EDGEBUF_BENCH_QUICK=1 for a
//! smaller run; EDGEBUF_BENCH_FORMAT=otlp_json or otlp_proto drains in that format, against the
//! same bare json client; EDGEBUF_BENCH_ORDER=newest_first drains newest first). Records are
//! ~300-byte predictions.

use ::edgebuf::ffi::*;
use hdrhistogram::Histogram;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn record(i: u64) -> String {
    let s = (i % 1000) as f64 / 1000.0;
    format!(
        concat!(
            "{{\"model\":\"mobilenet-v3-small\",\"model_version\":\"2026.11.3\",",
            "\"input_sha256\":\"{:016x}{:016x}\",\"frame\":{},",
            "\"scores\":[{:.5},{:.5},{:.5},{:.5},{:.5}],\"argmax\":{},",
            "\"latency_us\":{},\"device\":\"cam-07\",\"temperature_c\":41.5}}"
        ),
        i.wrapping_mul(0x9e3779b97f4a7c15),
        i ^ 0xdeadbeef,
        i,
        s,
        1.0 - s,
        s / 2.0,
        s / 3.0,
        s / 4.0,
        i % 5,
        1200 + i % 300
    )
}

fn quick() -> bool {
    std::env::var_os("EDGEBUF_BENCH_QUICK").is_some()
}

fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}/ingest", l.local_addr().unwrap().port())
}

struct Handle(*mut edgebuf_t);
// SAFETY: edgebuf handles are safe to use from any number of threads (docs/reference.md, C API).
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

fn open(path: &Path, endpoint: &str, extra: &[(&str, &str)]) -> Handle {
    let cfg = edgebuf_config_new();
    let set = |k: &str, v: &str| {
        let (k, v) = (CString::new(k).unwrap(), CString::new(v).unwrap());
        assert_eq!(
            edgebuf_config_set(cfg, k.as_ptr(), v.as_ptr()),
            EDGEBUF_OK,
            "{k:?}"
        );
    };
    set("path", path.to_str().unwrap());
    set("endpoint", endpoint);
    set("source.id", "bench");
    // Room for the whole backlog: these measures are about ingest and drain, not the
    // capacity policy.
    set("capacity.max_bytes", "4294967296");
    for (k, v) in extra {
        set(k, v);
    }
    let mut h = std::ptr::null_mut();
    assert_eq!(edgebuf_open(cfg, &mut h), EDGEBUF_OK);
    edgebuf_config_free(cfg);
    Handle(h)
}

fn status(h: &Handle) -> edgebuf_status_t {
    let mut st = edgebuf_status_t {
        struct_size: EDGEBUF_STATUS_SIZE_V1,
        ..Default::default()
    };
    edgebuf_status(h.0, &mut st);
    st
}

fn log(h: &Handle, r: &str) -> edgebuf_result {
    edgebuf_log(h.0, r.as_ptr().cast(), r.len())
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn io_write_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("write_bytes:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Row {
    what: String,
    edgebuf: String,
    baseline: String,
    ratio: String,
    goal: String,
}

fn row(rows: &mut Vec<Row>, what: &str, e: String, b: String, ratio: String, goal: &str) {
    println!("  {what}: {e} (baseline {b}) {ratio}");
    rows.push(Row {
        what: what.into(),
        edgebuf: e,
        baseline: b,
        ratio,
        goal: goal.into(),
    });
}

/// 1. Caller latency of edgebuf_log, async, endpoint down.
fn latency(rows: &mut Vec<Row>, threads: usize, n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let h = Arc::new(open(&dir.path().join("b.db"), &dead_endpoint(), &[]));
    let recs: Vec<String> = (0..1000).map(record).collect();
    let recs = Arc::new(recs);
    // Warm up.
    for i in 0..10_000u64 {
        log(&h, &recs[(i % 1000) as usize]);
    }
    let mut joins = Vec::new();
    for _ in 0..threads {
        let (h, recs) = (Arc::clone(&h), Arc::clone(&recs));
        joins.push(std::thread::spawn(move || {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
            for i in 0..n {
                let r = &recs[(i % 1000) as usize];
                let t = Instant::now();
                let rc = log(&h, r);
                let ns = t.elapsed().as_nanos() as u64;
                assert_eq!(rc, EDGEBUF_OK);
                let _ = hist.record(ns.max(1));
            }
            hist
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    for j in joins {
        hist.add(j.join().unwrap()).unwrap();
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    row(
        rows,
        &format!("log latency, {threads} thread(s), p50 / p99 / p99.9 / max µs"),
        format!(
            "{:.2} / {:.2} / {:.2} / {:.0}",
            us(0.5),
            us(0.99),
            us(0.999),
            hist.max() as f64 / 1000.0
        ),
        "-".into(),
        "-".into(),
        if threads == 1 {
            "p50 ≤ 1, p99.9 ≤ 20"
        } else {
            ""
        },
    );
    edgebuf_close(h.0, 0);
}

const PRAGMAS: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";
const TABLE: &str = "CREATE TABLE records(seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, t_acc INTEGER NOT NULL, inst TEXT, data BLOB NOT NULL);";

/// rusqlite inserting the rows in transactions of 1,000 with edgebuf's pragmas: records/s.
fn raw_ingest(recs: &[String], n: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    conn.execute_batch(PRAGMAS).unwrap();
    conn.execute_batch(TABLE).unwrap();
    let t = Instant::now();
    let mut i = 0u64;
    while i < n {
        let tx = conn.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached("INSERT INTO records(seq, ts_ms, t_acc, inst, data) VALUES (?1, ?2, ?3, NULL, ?4)")
                .unwrap();
            for _ in 0..1000 {
                i += 1;
                st.execute(rusqlite::params![
                    i as i64,
                    1_764_320_000_000i64,
                    0i64,
                    recs[(i % 1000) as usize].as_bytes()
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// 2. Sustained durable ingest vs rusqlite in batches of 1,000 with the same pragmas.
fn ingest(rows: &mut Vec<Row>, n: u64) {
    let recs: Vec<String> = (0..1000).map(record).collect();
    // Baseline: the same rows with rusqlite, before and after edgebuf (the mean), so that a
    // disk that gets busier or quieter meanwhile weighs on both sides alike.
    let base_before = raw_ingest(&recs, n);
    // edgebuf: log as fast as the memory queue allows, until everything is committed.
    let dir = tempfile::tempdir().unwrap();
    let h = open(
        &dir.path().join("b.db"),
        &dead_endpoint(),
        &[("memory.max_wait_ms", "1000")],
    );
    let io0 = io_write_bytes();
    let t = Instant::now();
    let mut payload = 0u64;
    for i in 0..n {
        let r = &recs[(i % 1000) as usize];
        payload += r.len() as u64;
        assert_eq!(log(&h, r), EDGEBUF_OK);
    }
    assert_eq!(edgebuf_sync(h.0, 600_000), EDGEBUF_OK);
    let rate = n as f64 / t.elapsed().as_secs_f64();
    // Before the second baseline writes its own file.
    let written = io_write_bytes().saturating_sub(io0);
    let base = (base_before + raw_ingest(&recs, n)) / 2.0;
    row(
        rows,
        "durable ingest, async, records/s",
        format!("{rate:.0}"),
        format!("{base:.0}"),
        format!("{:.2}", rate / base),
        "≥ 0.8",
    );
    let st = status(&h);
    row(
        rows,
        "bytes written per payload byte (write amplification)",
        format!("{:.2}", written as f64 / payload as f64),
        format!("payload {:.0} B/record", payload as f64 / n as f64),
        "-".into(),
        "< 3",
    );
    row(
        rows,
        "bytes on disk per pending payload byte",
        format!(
            "{:.2}",
            st.disk_bytes as f64 / st.pending_bytes.max(1) as f64
        ),
        format!("{} pending", st.pending_records),
        "-".into(),
        "< 2",
    );
    edgebuf_close(h.0, 0);
}

/// 3. durability=sync with 1, 8, 32 threads vs one INSERT + COMMIT (fsync) per record.
fn sync_mode(rows: &mut Vec<Row>, secs: f64) {
    let recs: Vec<String> = (0..1000).map(record).collect();
    // The naive design: one INSERT + COMMIT (fsync) per record. Measured twice: with
    // edgebuf's journal (WAL, synchronous=FULL), the ratio that group commit alone earns; and
    // with SQLite's defaults (rollback journal), what a straightforward buffer does.
    let naive_rate = |pragmas: &str| {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("naive.db")).unwrap();
        conn.execute_batch(pragmas).unwrap();
        conn.execute_batch(TABLE).unwrap();
        let t = Instant::now();
        let mut i = 0u64;
        while t.elapsed().as_secs_f64() < secs {
            i += 1;
            conn.execute(
                "INSERT INTO records(seq, ts_ms, t_acc, inst, data) VALUES (?1, 0, 0, NULL, ?2)",
                rusqlite::params![i as i64, recs[(i % 1000) as usize].as_bytes()],
            )
            .unwrap();
        }
        i as f64 / t.elapsed().as_secs_f64()
    };
    // Before and after edgebuf's runs (the mean), so that a disk that gets busier or quieter
    // meanwhile weighs on both sides alike.
    let naive_before = naive_rate("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    let naive_default = naive_rate("PRAGMA synchronous=FULL;");
    let mut measured = Vec::new();
    for threads in [1usize, 8, 32] {
        let dir = tempfile::tempdir().unwrap();
        let h = Arc::new(open(
            &dir.path().join("b.db"),
            &dead_endpoint(),
            &[("durability", "sync")],
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let t = Instant::now();
        let joins: Vec<_> = (0..threads)
            .map(|k| {
                let (h, stop, count) = (Arc::clone(&h), Arc::clone(&stop), Arc::clone(&count));
                let r = record(k as u64);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        assert_eq!(log(&h, &r), EDGEBUF_OK);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        for j in joins {
            j.join().unwrap();
        }
        let rate = count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
        measured.push((threads, rate));
        edgebuf_close(h.0, 0);
    }
    let naive =
        (naive_before + naive_rate("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")) / 2.0;
    for (threads, rate) in measured {
        row(
            rows,
            &format!("durability=sync, {threads} thread(s), records/s"),
            format!("{rate:.0}"),
            format!("{naive:.0} (naive, WAL) / {naive_default:.0} (naive, SQLite defaults)"),
            format!("{:.1}x / {:.1}x", rate / naive, rate / naive_default),
            if threads == 8 { "≥ 8x" } else { "" },
        );
    }
}

/// A minimal keep-alive HTTP/1.1 receiver that answers 200 and counts `"seq":` occurrences.
fn receiver(stop: Arc<AtomicBool>) -> (u16, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g2 = Arc::clone(&got);
    let j = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let (s, _) = match l.accept() {
                Ok(c) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
            };
            let (g, stop) = (Arc::clone(&g2), Arc::clone(&stop));
            std::thread::spawn(move || {
                s.set_nonblocking(false).ok();
                s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut body = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut len = 0usize;
                    let mut line = String::new();
                    let mut got_req = false;
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) => return,
                            Ok(_) => {}
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut =>
                            {
                                if got_req {
                                    return;
                                }
                                if stop.load(Ordering::Relaxed) {
                                    return;
                                }
                                continue;
                            }
                            Err(_) => return,
                        }
                        got_req = true;
                        let l = line.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    body.resize(len, 0);
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let n = body.windows(6).filter(|w| w == b"\"seq\":").count() as u64;
                    g.fetch_add(n, Ordering::Relaxed);
                    if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, got, j)
}

/// 4 and 5. Drain a backlog vs a bare client posting the same batches; RSS while logging and
/// while draining.
fn drain(rows: &mut Vec<Row>, n: u64) {
    let rss0 = rss_kb();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    let recs: Vec<String> = (0..1000).map(record).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (port, got, rj) = receiver(Arc::clone(&stop));
    let url = format!("http://127.0.0.1:{port}/ingest");
    // Log the backlog with the endpoint down (a dead port), then reopen against the receiver.
    let mut peak_log = 0u64;
    {
        let h = open(&path, &dead_endpoint(), &[("memory.max_wait_ms", "1000")]);
        for i in 0..n {
            assert_eq!(log(&h, &recs[(i % 1000) as usize]), EDGEBUF_OK);
            if i % 50_000 == 0 {
                peak_log = peak_log.max(rss_kb());
            }
        }
        assert_eq!(edgebuf_sync(h.0, 600_000), EDGEBUF_OK);
        peak_log = peak_log.max(rss_kb());
        edgebuf_close(h.0, 0);
    }
    let bare_before = bare_client(&url, &recs, n);
    // The format of the drain (json unless EDGEBUF_BENCH_FORMAT says otherwise); the bare
    // client posts json either way, so the ratio says what the format costs as well.
    let format = std::env::var("EDGEBUF_BENCH_FORMAT").unwrap_or_else(|_| "json".into());
    // The order of the drain (EDGEBUF_BENCH_ORDER=newest_first; oldest_first unless set).
    let order = std::env::var("EDGEBUF_BENCH_ORDER").unwrap_or_else(|_| "oldest_first".into());
    let h = open(
        &path,
        &url,
        &[
            ("format", format.as_str()),
            ("delivery.order", order.as_str()),
        ],
    );
    let t = Instant::now();
    let mut peak_drain = 0u64;
    loop {
        let st = status(&h);
        peak_drain = peak_drain.max(rss_kb());
        if st.pending_records == 0 || t.elapsed() > Duration::from_secs(240) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = status(&h).delivered_total;
    let rate = drained as f64 / t.elapsed().as_secs_f64();
    // Delivered rows are reclaimed from the file after the drain (the writer deletes them
    // while the worker is idle): how long until the file holds none.
    let t = Instant::now();
    let reader = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    while t.elapsed() < Duration::from_secs(120) {
        let left: i64 = reader
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .unwrap_or(-1);
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let reclaim_s = t.elapsed().as_secs_f64();
    drop(reader);
    edgebuf_close(h.0, 1000);
    let bare = (bare_before + bare_client(&url, &recs, n)) / 2.0;
    stop.store(true, Ordering::Relaxed);
    let _ = rj.join();
    let _ = &got;
    row(
        rows,
        &format!("drain {n} records to 127.0.0.1 ({format}, {order}), records/s"),
        format!("{rate:.0}"),
        format!("{bare:.0} (bare ureq client)"),
        format!("{:.2}", rate / bare),
        "≥ 0.5",
    );
    row(
        rows,
        "reclaiming the delivered rows after the drain, s",
        format!("{reclaim_s:.1}"),
        "-".into(),
        "-".into(),
        "",
    );
    row(
        rows,
        "peak RSS above baseline while logging / draining, MB",
        format!(
            "{:.1} / {:.1}",
            peak_log.saturating_sub(rss0) as f64 / 1024.0,
            peak_drain.saturating_sub(rss0) as f64 / 1024.0
        ),
        format!("baseline {:.1} MB", rss0 as f64 / 1024.0),
        "-".into(),
        "< 16",
    );
}

/// Batch `b` of 500 envelopes (seqs b * 500 + 1 ...) as one json request body, as the sender
/// makes it: `ts(seq)` and `data(seq)` give each envelope's time and record.
fn json_batch(
    b: u64,
    instance: &str,
    source: &str,
    ts: impl Fn(u64) -> u64,
    data: impl Fn(u64) -> String,
) -> String {
    let mut body = String::from("[");
    for k in 0..500u64 {
        let seq = b * 500 + k + 1;
        if k > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"id\":\"{instance}-{seq}\",\"seq\":{seq},\"ts_ms\":{},\"source\":\"{source}\",\"data\":{}}}",
            ts(seq),
            data(seq)
        ));
    }
    body.push(']');
    body
}

/// The bare client: the same batches (500 envelopes), pre-encoded, posted with ureq to the
/// same receiver. Records per second. It runs before and after edgebuf's drain; the mean of
/// the two is the baseline, so that load that comes and goes weighs on both sides alike.
fn bare_client(url: &str, recs: &[String], n: u64) -> f64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let mut bodies = Vec::new();
    for b in 0..(n / 500).min(200) {
        bodies.push(json_batch(
            b,
            "0123456789abcdef",
            "bench",
            |_| 1764320000123,
            |seq| recs[(seq % 1000) as usize].clone(),
        ));
    }
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < n {
        let body = &bodies[((sent / 500) as usize) % bodies.len()];
        agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        sent += 500;
    }
    sent as f64 / t.elapsed().as_secs_f64()
}

/// CPU time of the calling thread, from /proc/thread-self/schedstat (nanoseconds on the CPU);
/// None where the kernel does not keep it.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Part 6, http.compression on request bodies as the sender makes them: batches of 500 prediction
/// records, as one JSON array of envelopes each, compressed one batch at a time (one-shot, as
/// src/http does). Ratio = body bytes / compressed bytes; CPU = this thread's time per MB of
/// body (input). gzip is flate2 at its default level (the library's gzip); zstd is shown at
/// several levels, the row named after `http.compression=zstd` being the level the library uses.
fn compression(rows: &mut Vec<Row>, batches: u64) {
    let mut bodies = Vec::new();
    for b in 0..batches {
        let body = json_batch(
            b,
            "3f2a9c01d4e5b677",
            "cam-07",
            |seq| 1764320000123 + seq * 50 + seq % 7,
            record,
        );
        bodies.push(body.into_bytes());
    }
    let input: usize = bodies.iter().map(|b| b.len()).sum();
    let mb = input as f64 / 1e6;
    // (ratio, CPU ms per MB of input), the best of a few rounds.
    let measure = |f: &dyn Fn(&[u8]) -> Vec<u8>| -> (f64, f64) {
        let mut out = 0usize;
        let mut best = f64::MAX;
        for _ in 0..3 {
            let (c0, t0) = (thread_cpu(), Instant::now());
            out = bodies.iter().map(|b| f(b).len()).sum();
            let spent = match (c0, thread_cpu()) {
                (Some(a), Some(b)) => (b - a).as_secs_f64(),
                _ => t0.elapsed().as_secs_f64(),
            };
            best = best.min(spent * 1000.0 / mb);
        }
        (input as f64 / out as f64, best)
    };
    let gzip = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let (gz_ratio, gz_ms) = measure(&gzip);
    println!("  gzip (flate2 default level 6): ratio {gz_ratio:.2}, {gz_ms:.1} ms CPU/MB");
    let mut zstd_at = Vec::new();
    for level in [1, 2, 3, 5, 9, 19] {
        let (ratio, ms) = measure(&|b: &[u8]| zstd::bulk::compress(b, level).unwrap());
        println!("  zstd level {level}: ratio {ratio:.2}, {ms:.1} ms CPU/MB");
        zstd_at.push((level, ratio, ms));
    }
    let mut row_of = |what: String, ratio: f64, ms: f64| {
        row(
            rows,
            &what,
            format!("ratio {ratio:.2}, {ms:.1} ms CPU/MB"),
            format!("gzip: ratio {gz_ratio:.2}, {gz_ms:.1} ms CPU/MB"),
            format!(
                "{:.2}× smaller, {:.2}× the CPU",
                ratio / gz_ratio,
                ms / gz_ms
            ),
            "",
        );
    };
    for (level, ratio, ms) in zstd_at {
        let what = if level == ZSTD_LEVEL {
            format!("http.compression=zstd (level {level}) on {batches} batches of 500 records ({mb:.1} MB)")
        } else {
            format!("zstd level {level}, same batches")
        };
        row_of(what, ratio, ms);
    }
}

/// The level src/http uses for http.compression=zstd (kept in step with src/http/mod.rs).
const ZSTD_LEVEL: i32 = 1;

fn footprint(rows: &mut Vec<Row>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let so = root.join("target/release/libedgebuf.so");
    let tmp = std::env::temp_dir().join(format!("edgebuf-bench-{}.so", std::process::id()));
    let size = if std::fs::copy(&so, &tmp).is_ok()
        && std::process::Command::new("strip")
            .arg(&tmp)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    {
        let s = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
        format!("{:.2} MB", s as f64 / 1e6)
    } else {
        "n/a (build target/release/libedgebuf.so first)".into()
    };
    let _ = std::fs::remove_file(&tmp);
    let ex = root.join("examples-c/inference-static");
    let ex_size = std::fs::metadata(&ex)
        .map(|m| format!("{:.2} MB", m.len() as f64 / 1e6))
        .unwrap_or_else(|_| "n/a (make -C examples-c static)".into());
    row(
        rows,
        "stripped libedgebuf.so / static C example",
        format!("{size} / {ex_size}"),
        "-".into(),
        "-".into(),
        "",
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let q = quick();
    let mut rows = Vec::new();
    println!(
        "edgebuf benchmark ({} run)",
        if q { "quick" } else { "full" }
    );
    // EDGEBUF_BENCH_ONLY=drain (or latency, ingest, sync, compression, footprint;
    // comma-separated) runs
    // only those parts, for profiling one of them.
    let only = std::env::var("EDGEBUF_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    if run("latency") {
        latency(&mut rows, 1, if q { 200_000 } else { 1_000_000 });
        latency(&mut rows, 4, if q { 100_000 } else { 250_000 });
    }
    if run("ingest") {
        ingest(&mut rows, if q { 200_000 } else { 1_000_000 });
    }
    if run("sync") {
        sync_mode(&mut rows, if q { 1.0 } else { 3.0 });
    }
    if run("drain") {
        drain(&mut rows, if q { 100_000 } else { 1_000_000 });
    }
    if run("compression") {
        compression(&mut rows, if q { 10 } else { 40 });
    }
    if run("footprint") {
        footprint(&mut rows);
    }
    println!();
    println!("| measure | edgebuf | baseline | ratio | goal |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.what, r.edgebuf, r.baseline, r.ratio, r.goal
        );
    }
}
