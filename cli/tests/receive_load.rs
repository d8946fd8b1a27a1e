//! `edgebuf receive` under load, run as a program: connections that stall do not hold up the
//! others, idle connections do not cost a thread each, a body over --max-body is refused from
//! its declared length before it is read, and a large body does not multiply the memory used.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod receiver;
use receiver::Receive;

/// The threads of a process.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The peak resident memory of a process, in bytes.
fn vm_hwm(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

fn env(seq: u64, data: &str) -> String {
    format!(
        "{{\"id\":\"00000000000000aa-{seq}\",\"seq\":{seq},\"ts_ms\":1764320000123,\
         \"source\":\"load\",\"data\":{data}}}"
    )
}

/// Reads one response; its status, or an error when none came within the socket's timeout.
fn status_of(s: &mut TcpStream) -> Result<u16, String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&head))),
            Ok(_) => head.push(b[0]),
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&head);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not a status line: {head:?}"))
}

/// POSTs `body` on a new connection; the status, or why none came within `timeout`.
fn post(port: u16, body: &[u8], timeout: Duration) -> Result<u16, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).unwrap();
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    status_of(&mut s)
}

#[test]
fn stalled_connections_do_not_hold_up_a_post() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receive::start(&dir.path().join("out"), &[]);
    let mut stalled = Vec::new();
    for i in 0..12 {
        let mut s = rx.connect();
        let sent: &[u8] = match i / 4 {
            // Complete headers, then a body that never comes.
            0 => b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
            // A body that never finishes.
            1 => b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n[{\"id\":",
            // Headers that never finish.
            _ => b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Le",
        };
        s.write_all(sent).unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let body = format!("{}\n", env(1, "{\"p\":0.9}"));
    assert_eq!(
        post(rx.port, body.as_bytes(), Duration::from_secs(5)),
        Ok(200),
        "a POST beside 12 stalled connections"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // The stalled ones are answered 408 and closed once their read timeout passes.
    let mut s = stalled.remove(2);
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(status_of(&mut s), Ok(408));
}

#[test]
fn idle_connections_do_not_cost_a_thread_each() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receive::start(&dir.path().join("out"), &[]);
    let before = threads(rx.pid());
    let idle: Vec<TcpStream> = (0..300).map(|_| rx.connect()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = threads(rx.pid());
    assert!(
        during <= before.max(8),
        "{during} threads with 300 idle connections ({before} before)"
    );
    // A client still gets through: the longest idle connections make room.
    let body = format!("{}\n", env(1, "1"));
    assert_eq!(
        post(rx.port, body.as_bytes(), Duration::from_secs(5)),
        Ok(200)
    );
    assert!(threads(rx.pid()) <= before.max(8));
    drop(idle);
}

#[test]
fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receive::start(&dir.path().join("out"), &[]);
    // The default --max-body is 64 MiB: one byte more is refused from the header alone.
    let mut s = rx.connect();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        (64u64 << 20) + 1
    );
    s.write_all(head.as_bytes()).unwrap();
    assert_eq!(status_of(&mut s), Ok(413));

    // A chunked body is refused as soon as it passes the limit, before its end.
    let rx = Receive::start(&dir.path().join("out2"), &["--max-body", "65536"]);
    let mut s = rx.connect();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![b' '; 16384];
    for _ in 0..5 {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        s.write_all(&chunk).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    assert_eq!(status_of(&mut s), Ok(413));
}

#[test]
fn three_64_mib_bodies_at_once_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rx = Receive::start(&out, &[]);
    let data = format!("{{\"x\":\"{}\"}}", "a".repeat(1000));
    let limit = 64usize << 20;
    let mut body = Vec::with_capacity(limit);
    let mut n = 0u64;
    loop {
        let line = format!("{}\n", env(n + 1, &data));
        if body.len() + line.len() > limit {
            break;
        }
        body.extend_from_slice(line.as_bytes());
        n += 1;
    }
    // The same body three times at once (the copies after the first are duplicates).
    let body = std::sync::Arc::new(body);
    let posts: Vec<_> = (0..3)
        .map(|_| {
            let (b, port) = (std::sync::Arc::clone(&body), rx.port);
            std::thread::spawn(move || post(port, &b, Duration::from_secs(120)))
        })
        .collect();
    for p in posts {
        assert_eq!(p.join().unwrap(), Ok(200), "{} bytes", body.len());
    }
    let hwm = vm_hwm(rx.pid());
    drop(body);
    assert!(
        hwm < 128 << 20,
        "peak RSS {} MiB for three {} MiB bodies at once",
        hwm >> 20,
        limit >> 20
    );
    let kept = std::fs::read(&out).unwrap();
    assert_eq!(kept.iter().filter(|&&b| b == b'\n').count() as u64, n);
}

/// Reads one response with a Content-Length body; (status, body).
fn response(s: &mut TcpStream) -> (u16, String) {
    let code = status_of(s).unwrap();
    // status_of consumed the head; the bodies here are JSON objects of one line, so read
    // until the braces balance.
    let (mut body, mut depth, mut b) = (Vec::new(), 0i32, [0u8; 1]);
    loop {
        s.read_exact(&mut b).unwrap();
        body.push(b[0]);
        match b[0] {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && !body.is_empty() && b[0] == b'}' {
            break;
        }
    }
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn keep_alive_pipelining_chunked_and_expect_continue() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rx = Receive::start(&out, &[]);
    let mut s = rx.connect();
    // Two requests in one write, the second chunked and gzipped, on one connection.
    let a = format!("[{}]", env(1, "1"));
    let b = format!("{}\n{}\n", env(2, "2"), env(1, "1"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let mut req = format!(
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{a}",
        a.len()
    )
    .into_bytes();
    req.extend_from_slice(
        b"\r\nPOST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
          Content-Encoding: gzip\r\n\r\n",
    );
    for part in gz.chunks(7) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).unwrap();
    assert_eq!(
        response(&mut s),
        (200, "{\"accepted\":1,\"duplicates\":0,\"new\":1}".into())
    );
    assert_eq!(
        response(&mut s),
        (200, "{\"accepted\":2,\"duplicates\":1,\"new\":1}".into())
    );
    // Expect: 100-continue: the interim answer comes before the body is sent.
    let c = format!("[{}]", env(3, "3"));
    s.write_all(
        format!(
            "POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            c.len()
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(status_of(&mut s), Ok(100));
    s.write_all(c.as_bytes()).unwrap();
    assert_eq!(response(&mut s).0, 200);
    // GET /stats, then a request that closes the connection.
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (code, stats) = response(&mut s);
    assert_eq!(code, 200);
    assert!(stats.contains("\"unique\":3"), "{stats}");
    s.write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(response(&mut s).0, 405);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed after Connection: close");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
}

/// Bodies that do not fit --max-body together wait for their turn instead of failing.
#[test]
fn large_bodies_take_turns_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rx = Receive::start(&out, &["--max-body", "1048576"]);
    let data = format!("{{\"x\":\"{}\"}}", "a".repeat(1000));
    let posts: Vec<_> = (0..4u64)
        .map(|k| {
            let mut body = Vec::new();
            let mut seq = 0;
            while body.len() < 900_000 {
                seq += 1;
                body.extend_from_slice(
                    format!("{}\n", env(seq, &data))
                        .replace("\"source\":\"load\"", &format!("\"source\":\"s{k}\""))
                        .as_bytes(),
                );
            }
            let port = rx.port;
            std::thread::spawn(move || {
                if k % 2 == 0 {
                    return post(port, &body, Duration::from_secs(30));
                }
                // Chunked: it reserves as it grows.
                let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut req =
                    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for c in body.chunks(50_000) {
                    req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    req.extend_from_slice(c);
                    req.extend_from_slice(b"\r\n");
                }
                req.extend_from_slice(b"0\r\n\r\n");
                s.write_all(&req).map_err(|e| e.to_string())?;
                status_of(&mut s)
            })
        })
        .collect();
    for p in posts {
        assert_eq!(p.join().unwrap(), Ok(200));
    }
    let lines = std::fs::read_to_string(&out).unwrap().lines().count();
    assert_eq!(lines % 4, 0);
    assert!(lines >= 4 * 800, "{lines} lines");
}
