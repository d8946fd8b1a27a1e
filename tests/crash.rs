//! kill -9 at random moments: in sync mode no record whose log returned OK is lost, the file
//! always reopens, the lock of a killed owner never blocks the next open, and the next open
//! delivers everything that was pending.

mod common;
use common::*;
use edgebuf::Buffer;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The child: logs numbered records from 4 threads in sync mode and prints each number after
/// its log returned OK. Runs only when the parent sets EDGEBUF_CRASH_DIR.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("EDGEBUF_CRASH_DIR") else {
        return;
    };
    let base: u64 = std::env::var("EDGEBUF_CRASH_BASE")
        .unwrap()
        .parse()
        .unwrap();
    let endpoint = std::env::var("EDGEBUF_CRASH_ENDPOINT")
        .unwrap_or_else(|_| format!("http://127.0.0.1:{}/", dead_port()));
    let mut c = config(std::path::Path::new(&dir), &endpoint);
    let mode = std::env::var("EDGEBUF_CRASH_MODE").unwrap_or_else(|_| "sync".into());
    c.set("durability", &mode).unwrap();
    c.set("commit.interval_ms", "100").unwrap();
    let b = std::sync::Arc::new(Buffer::open(&c, None).unwrap());
    println!("opened");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let b = std::sync::Arc::clone(&b);
            std::thread::spawn(move || {
                for i in 0..1_000_000u64 {
                    let n = base + t * 100_000 + i;
                    b.log(format!("{{\"n\":{n}}}").as_bytes()).unwrap();
                    println!("{n}");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_in_sync_mode_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = BTreeSet::new();
    let mut rng = fastrand::Rng::with_seed(7);
    // EDGEBUF_CRASH_CYCLES=1000 for a longer run.
    let cycles: u64 = std::env::var("EDGEBUF_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut opened = 0u64;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("EDGEBUF_CRASH_DIR", dir.path())
            .env("EDGEBUF_CRASH_BASE", (cycle * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx_open) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test crash_child ... " before it, on the same line.
                if line.ends_with("opened") {
                    let _ = tx.send(());
                } else if let Ok(n) = line.trim().parse::<u64>() {
                    v.push(n);
                }
            }
            v
        });
        // Once the file is open (it must open every time), a random moment of logging.
        if rx_open.recv_timeout(Duration::from_secs(10)).is_ok() {
            opened += 1;
            std::thread::sleep(Duration::from_millis(rng.u64(0..120)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());
    }
    assert_eq!(opened, cycles, "the file failed to open after a kill");
    assert!(
        acked.len() > 100,
        "the children logged too little: {}",
        acked.len()
    );
    eprintln!("{} records acknowledged across {cycles} kills", acked.len());
    let rx = Server::receiver();
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).expect("the file always reopens");
    b.flush(Duration::from_secs(60)).unwrap();
    let got: BTreeSet<u64> = rx
        .delivered()
        .iter()
        .filter_map(|e| e["data"]["n"].as_u64())
        .collect();
    let lost: Vec<_> = acked.difference(&got).take(10).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not delivered: {lost:?} (of {})",
        acked.len()
    );
    let s = b.status();
    assert_eq!(s.delivered_total, s.pending_at_open);
    let end = Instant::now();
    b.close(Duration::from_secs(1)).unwrap();
    assert!(end.elapsed() < Duration::from_secs(2));
}

/// Runs the child in `mode` until `until` says stop, then SIGKILLs it. Returns the numbers it
/// printed with the moment each was read, and the moment of the kill.
fn run_child(
    dir: &std::path::Path,
    base: u64,
    mode: &str,
    endpoint: Option<&str>,
    until: impl FnOnce(),
) -> (Vec<(u64, Instant)>, Instant) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("EDGEBUF_CRASH_DIR", dir)
        .env("EDGEBUF_CRASH_BASE", base.to_string())
        .env("EDGEBUF_CRASH_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(e) = endpoint {
        cmd.env("EDGEBUF_CRASH_ENDPOINT", e);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(n) = line.trim().parse::<u64>() {
                v.push((n, Instant::now()));
            }
        }
        v
    });
    until();
    let killed = Instant::now();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    (reader.join().unwrap(), killed)
}

#[test]
fn sigkill_in_async_mode_loses_at_most_the_last_commit_interval() {
    // commit.interval_ms = 100 in the child; anything logged more than interval + a margin
    // for scheduling before the kill must survive.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    let mut must_arrive = BTreeSet::new();
    let mut logged = 0usize;
    for cycle in 0..6u64 {
        let wait = Duration::from_millis(400 + rng.u64(0..400));
        let (lines, killed) = run_child(dir.path(), cycle * 1_000_000, "async", None, || {
            std::thread::sleep(wait)
        });
        logged += lines.len();
        for (n, at) in lines {
            if killed.duration_since(at) > Duration::from_millis(100 + 400) {
                must_arrive.insert(n);
            }
        }
    }
    assert!(
        must_arrive.len() > 100,
        "too little logged: {}",
        must_arrive.len()
    );
    let rx = Server::receiver();
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).expect("the file always reopens");
    b.flush(Duration::from_secs(60)).unwrap();
    let got: BTreeSet<u64> = rx
        .delivered()
        .iter()
        .filter_map(|e| e["data"]["n"].as_u64())
        .collect();
    let lost: Vec<_> = must_arrive.difference(&got).take(10).collect();
    assert!(
        lost.is_empty(),
        "committed long before the kill but lost: {lost:?}"
    );
    eprintln!(
        "async: {logged} logged, {} older than the loss bound, {} delivered after 6 kills",
        must_arrive.len(),
        got.len()
    );
    b.close(Duration::from_secs(1)).unwrap();
}

#[test]
fn sigkill_during_delivery_resends_with_the_same_ids() {
    // The endpoint takes the request and never answers; the owner is killed while the request
    // is in flight (after the send, before the delete). The next open sends the same records
    // again, with the same ids: the receiver sees duplicates it can drop by id.
    let dir = tempfile::tempdir().unwrap();
    let hang = Server::start(|_| Act::Hang);
    let url = hang.url();
    let (lines, _) = run_child(dir.path(), 0, "sync", Some(&url), || {
        // Killed once a whole request is in (and held, never answered).
        hang.wait_hits(1, Duration::from_secs(20));
    });
    let request = hang
        .hits()
        .into_iter()
        .next()
        .expect("the child never sent a request");
    let in_flight: BTreeSet<String> = request
        .envelopes()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !in_flight.is_empty(),
        "the abandoned request carried records"
    );
    eprintln!(
        "delivery kill: {} acknowledged before the kill",
        lines.len()
    );
    assert!(!lines.is_empty());
    let rx = Server::receiver();
    let b = Buffer::open(&config(dir.path(), &rx.url()), None).unwrap();
    b.flush(Duration::from_secs(60)).unwrap();
    b.close(Duration::from_secs(1)).unwrap();
    let got = rx.delivered();
    let ids: BTreeSet<String> = got
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids.len(),
        got.len(),
        "each id delivered once by the second owner"
    );
    assert!(
        in_flight.is_subset(&ids),
        "the records of the request in flight at the kill are sent again with the same ids"
    );
    let acked: BTreeSet<u64> = lines.iter().map(|l| l.0).collect();
    let delivered: BTreeSet<u64> = got.iter().filter_map(|e| e["data"]["n"].as_u64()).collect();
    assert!(acked.is_subset(&delivered));
}
