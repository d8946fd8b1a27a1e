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
    let mut c = config(
        std::path::Path::new(&dir),
        &format!("http://127.0.0.1:{}/", dead_port()),
    );
    c.set("durability", "sync").unwrap();
    let b = std::sync::Arc::new(Buffer::open(&c, None).unwrap());
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
    for cycle in 0..12u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("EDGEBUF_CRASH_DIR", dir.path())
            .env("EDGEBUF_CRASH_BASE", (cycle * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(n) = line.trim().parse::<u64>() {
                    v.push(n);
                }
            }
            v
        });
        // Let it run until it has logged something, then a random moment more.
        std::thread::sleep(Duration::from_millis(150 + rng.u64(0..250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());
    }
    assert!(
        acked.len() > 100,
        "the children logged too little: {}",
        acked.len()
    );
    eprintln!("{} records acknowledged across 12 kills", acked.len());
    let rx = Receiver::start();
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
