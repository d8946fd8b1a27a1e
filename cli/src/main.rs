//! `edgebuf`: the command-line tool of edgebuf.
//!
//! - `edgebuf receive`: a reference receiver for the wire format (docs/reference.md, the wire) that deduplicates on
//!   (`source`, `id`) and appends each new envelope as one line to a file; it can be switched to
//!   failing (a control file, or SIGUSR1) to play an outage without a restart.
//! - `edgebuf status`, `edgebuf export`, `edgebuf check`: read a buffer file (read-only, also
//!   while a program holds it open) and print its backlog (also as Prometheus text, for
//!   node_exporter's textfile collector), its records, or its integrity. They never write to the
//!   file, and leave no `-wal` or `-shm` behind that was not there.
//! - `edgebuf requeue`, `edgebuf compact`, `edgebuf drain`: maintenance that writes to the
//!   file. Each takes the buffer's lock like the library does, so each refuses (exit 3) while a
//!   program holds the buffer open.

use clap::{Args, Parser, Subcommand};
use edgebuf::inspect::{file_sizes, is_ours, lock_holder, BufferFile};
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "edgebuf",
    version,
    about = "Inspect and maintain edgebuf buffer files, deliver a backlog, run a reference receiver",
    long_about = "Inspect edgebuf buffer files (status, export, check: read-only, also while a \
                  program holds them open), maintain them (requeue, compact, drain: only while no \
                  program holds them), and run a reference receiver for edgebuf's wire format.\n\n\
                  Exit codes: 0 success; 1 the buffer file is damaged or not an edgebuf buffer; \
                  2 a usage error, or a file that cannot be read or written; 3 the buffer is held \
                  by another process (requeue, compact, drain: stop that process first); \
                  4 drain: records are still pending when the timeout passed or it was \
                  interrupted (they stay on disk)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Receive(receive::ReceiveArgs),
    Status(StatusArgs),
    Export(ExportArgs),
    Check(CheckArgs),
    Requeue(RequeueArgs),
    Compact(CompactArgs),
    Drain(Box<DrainArgs>),
}

/// Print the backlog of a buffer file: pending records and bytes, oldest record, dead letters,
/// file size, instance id.
///
/// Opens the file read-only; works while a program holds it open (records still in that
/// program's memory queue, not yet committed, are not counted).
///
/// `--format prometheus` writes the same fields as Prometheus text exposition format, for
/// node_exporter's textfile collector: gauges named `edgebuf_*` with HELP and TYPE lines, bytes
/// in `_bytes`, ages and times in `_seconds`, each with a `path` label.
#[derive(Args)]
struct StatusArgs {
    /// The buffer file (the `path` of the configuration).
    path: PathBuf,
    /// Print one JSON object instead of text (the same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// The output: text for a person, one JSON object, or Prometheus text exposition format.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = StatusFormat::Text)]
    format: StatusFormat,
    /// With `--format prometheus`: also write `edgebuf_capacity_max_bytes` with this value
    /// (the program's `capacity.max_bytes`, which the file does not record), so that an alert
    /// can compare the backlog with it.
    #[arg(long, value_name = "BYTES")]
    capacity_max_bytes: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StatusFormat {
    Text,
    Json,
    Prometheus,
}

/// Print the records of a buffer file as NDJSON envelopes, in seq order.
///
/// Each line is the envelope of the wire format:
/// {"id":"<instance>-<seq>","seq":N,"ts_ms":N,"source":"...","data":<the record verbatim>}.
/// The source is not stored in the file: it is --source, or "". With --dead-letters, each
/// line also has "dead_letter":{"status":N,"reason":"...","dead_unix_ms":N}.
#[derive(Args)]
struct ExportArgs {
    /// The buffer file.
    path: PathBuf,
    /// Export the dead letters instead of the pending records.
    #[arg(long)]
    dead_letters: bool,
    /// At most this many records (the oldest first).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// The `source` written into every envelope.
    #[arg(long, value_name = "ID", default_value = "")]
    source: String,
}

/// Check the integrity of a buffer file (SQLite `PRAGMA integrity_check`, and that it is an
/// edgebuf buffer of a known schema).
///
/// Exit code 0 when it is sound, 1 when it is damaged or not an edgebuf buffer (the library
/// would quarantine or refuse it at open), 2 when it cannot be read at all.
#[derive(Args)]
struct CheckArgs {
    /// The buffer file.
    path: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Receive(_)) {
        // Like any Unix filter: `edgebuf export buf.db | head` ends quietly.
        // SAFETY: restores the default action of one signal, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let r = match cli.cmd {
        Cmd::Receive(a) => receive::run(a),
        Cmd::Status(a) => status(a),
        Cmd::Export(a) => export(a),
        Cmd::Check(a) => check(a),
        Cmd::Requeue(a) => requeue(a),
        Cmd::Compact(a) => compact(a),
        Cmd::Drain(a) => drain::run(*a),
    };
    match r {
        Ok(code) => code,
        Err(f) => {
            eprintln!("edgebuf: {}", printable(f.message()));
            f.exit_code()
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    /// The file is damaged or not an edgebuf buffer (exit 1).
    Bad(String),
    /// Anything else: missing file, permissions, I/O, bind (exit 2).
    Other(String),
    /// A writing command found the buffer held by another process (exit 3).
    Held(String),
}

/// Exit code of a writing command that found the buffer held by another process.
const EXIT_HELD: u8 = 3;
/// Exit code of `drain` when records are still pending at its end (timeout or interrupt).
const EXIT_NOT_DRAINED: u8 = 4;

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Bad(m) | Failure::Other(m) | Failure::Held(m) => m,
        }
    }

    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Bad(_) => ExitCode::from(1),
            Failure::Other(_) => ExitCode::from(2),
            Failure::Held(_) => ExitCode::from(EXIT_HELD),
        }
    }
}

type Outcome = Result<ExitCode, Failure>;

// ---------------------------------------------------------------------------------------------
// Reading a buffer file

/// Text read from a file or from SQLite about it, made safe for a terminal: control
/// characters (escape sequences included) become `\u{..}` escapes.
/// A path as the tool prints it: control characters escaped, like every string it did not
/// write itself (a file named with an escape sequence must not reach the terminal raw).
fn shown(p: &Path) -> String {
    printable(&p.display().to_string())
}

fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A failure of the library's file reader: a damaged or foreign file, or anything else.
fn read_failure(e: edgebuf::Error) -> Failure {
    match e.code() {
        edgebuf::Code::Corrupt => Failure::Bad(e.message().to_string()),
        _ => Failure::Other(e.message().to_string()),
    }
}

/// Opens `path` read-only and checks it is an edgebuf buffer (see [`BufferFile::open`]).
/// Never creates the file; never writes to it.
fn open_buffer(path: &Path) -> Result<BufferFile, Failure> {
    BufferFile::open(path).map_err(read_failure)
}

/// `2026-11-28T16:40:12.123Z`.
fn iso_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_age(ms: i64) -> String {
    let s = ms.max(0) as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86_400.0)
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// ---------------------------------------------------------------------------------------------
// edgebuf status

fn status(a: StatusArgs) -> Outcome {
    let path = &a.path;
    let format = if a.json { StatusFormat::Json } else { a.format };
    if a.capacity_max_bytes.is_some() && format != StatusFormat::Prometheus {
        return Err(Failure::Other(
            "--capacity-max-bytes goes with --format prometheus".into(),
        ));
    }
    // Sizes as found (see `BufferFile::open` on the -wal and -shm).
    let [db, wal, shm] = file_sizes(path);
    let b = open_buffer(path)?;
    let sum = b.summary().map_err(read_failure)?;
    let (pending, pending_bytes, oldest_ts) = (
        sum.pending_records,
        sum.pending_bytes,
        sum.oldest_pending_ts_ms,
    );
    let (first_seq, last_seq) = (sum.first_pending_seq, sum.last_stored_seq);
    let (dead, dead_bytes) = (sum.dead_letter_records, sum.dead_letter_bytes);
    let by_status = &sum.dead_letters_by_status;
    let reclaimable = sum.delivered_unreclaimed_records;
    let hwm = sum.high_water_mark;
    let holder = lock_holder(path);
    let now = now_ms();

    if format == StatusFormat::Prometheus {
        let m = prometheus::Metrics {
            path,
            instance: b.instance(),
            schema_version: b.schema_version(),
            summary: &sum,
            sizes: [db, wal, shm],
            in_use: holder.as_ref().ok().map(Option::is_some),
            now_ms: now,
            capacity_max_bytes: a.capacity_max_bytes,
        };
        print!("{}", m.render());
        return Ok(ExitCode::SUCCESS);
    }
    if format == StatusFormat::Json {
        let v = serde_json::json!({
            "path": path.display().to_string(), // JSON escapes control characters
            "instance": b.instance(),
            "schema_version": b.schema_version(),
            "pending_records": pending,
            "pending_bytes": pending_bytes,
            "oldest_pending_ts_ms": oldest_ts,
            "first_pending_seq": first_seq,
            "last_seq": hwm,
            "dead_letter_records": dead,
            "dead_letter_bytes": dead_bytes,
            "dead_letters_by_status": by_status.iter()
                .map(|(s, n)| (s.to_string(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "delivered_unreclaimed_records": reclaimable,
            "disk_bytes": db + wal + shm,
            "db_bytes": db,
            "wal_bytes": wal,
            "shm_bytes": shm,
            "locked_by_pid": holder.ok().flatten(),
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<14}{v}\n"));
    line("buffer", shown(path));
    line("instance", b.instance().to_string());
    line(
        "pending",
        format!(
            "{}, {} ({} bytes of records){}",
            plural(pending, "record", "records"),
            human_bytes(pending_bytes),
            pending_bytes,
            match (first_seq, last_seq) {
                (Some(f), Some(l)) => format!(", seq {f}..{l}"),
                _ => String::new(),
            }
        ),
    );
    line(
        "oldest",
        match oldest_ts {
            Some(ts) => format!("{} ({} ago)", iso_utc(ts), human_age(now - ts)),
            None => "-".into(),
        },
    );
    line("last seq", hwm.to_string());
    let statuses = if by_status.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = by_status
            .iter()
            .map(|(s, n)| format!("HTTP {s}: {n}"))
            .collect();
        format!(" ({})", parts.join(", "))
    };
    line(
        "dead letters",
        format!(
            "{}, {}{statuses}",
            plural(dead, "record", "records"),
            human_bytes(dead_bytes)
        ),
    );
    line(
        "file size",
        format!(
            "{} (db {db} + wal {wal} + shm {shm} bytes)",
            human_bytes(db + wal + shm)
        ),
    );
    if reclaimable > 0 {
        line(
            "reclaimable",
            format!(
                "{} delivered, not yet deleted (the library or `edgebuf compact` reclaims them)",
                plural(reclaimable, "record", "records")
            ),
        );
    }
    line(
        "in use",
        match holder {
            Ok(Some(pid)) => format!("yes, by pid {pid} (its uncommitted records are not counted)"),
            Ok(None) => "no".into(),
            Err(_) => "unknown".into(),
        },
    );
    print!("{o}");
    Ok(ExitCode::SUCCESS)
}

/// `edgebuf status --format prometheus`: Prometheus text exposition format (version 0.0.4),
/// as node_exporter's textfile collector reads it.
mod prometheus {
    use super::printable;
    use edgebuf::inspect::Summary;
    use std::fmt::Write;
    use std::path::Path;

    /// What `status` read, for one buffer file.
    pub struct Metrics<'a> {
        pub path: &'a Path,
        pub instance: &'a str,
        pub schema_version: i32,
        pub summary: &'a Summary,
        /// The file, its `-wal` and its `-shm`, as found.
        pub sizes: [u64; 3],
        /// Whether a process holds the buffer's lock; None when that could not be read.
        pub in_use: Option<bool>,
        pub now_ms: i64,
        pub capacity_max_bytes: Option<u64>,
    }

    /// A label value as the exposition format escapes it: `\`, `"` and line feed. Other
    /// control characters are written as `\u{..}` text, as the tool does everywhere (a file
    /// named with an escape sequence never reaches a terminal raw).
    pub fn label_value(s: &str) -> String {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '\\' => o.push_str("\\\\"),
                '"' => o.push_str("\\\""),
                '\n' => o.push_str("\\n"),
                c if c.is_control() => o.push_str(&printable(&c.to_string()).replace('\\', "\\\\")),
                c => o.push(c),
            }
        }
        o
    }

    /// Seconds from milliseconds, exactly (three decimals).
    fn seconds(ms: i64) -> String {
        let sign = if ms < 0 { "-" } else { "" };
        let a = ms.unsigned_abs();
        format!("{sign}{}.{:03}", a / 1000, a % 1000)
    }

    impl Metrics<'_> {
        pub fn render(&self) -> String {
            let s = self.summary;
            let path = format!("path=\"{}\"", label_value(&self.path.display().to_string()));
            let mut o = String::new();
            // One family: its HELP and TYPE lines, then its samples (extra labels, value).
            let mut family = |name: &str, help: &str, samples: &[(String, String)]| {
                let _ = writeln!(o, "# HELP {name} {help}");
                let _ = writeln!(o, "# TYPE {name} gauge");
                for (labels, value) in samples {
                    let _ = writeln!(o, "{name}{{{path}{labels}}} {value}");
                }
            };
            let one = |v: u64| vec![(String::new(), v.to_string())];
            let [db, wal, shm] = self.sizes;
            family(
                "edgebuf_buffer_info",
                "The buffer file's instance id (the first part of each record id; buffer_instance, as node_exporter's target already has an instance label) and schema version; always 1.",
                &[(
                    format!(
                        ",buffer_instance=\"{}\",schema_version=\"{}\"",
                        label_value(self.instance),
                        self.schema_version
                    ),
                    "1".into(),
                )],
            );
            family(
                "edgebuf_pending_records",
                "Records committed to the file and not delivered yet (a running program's uncommitted memory queue is not counted).",
                &one(s.pending_records),
            );
            family(
                "edgebuf_pending_bytes",
                "Payload bytes of the pending records, as logged.",
                &one(s.pending_bytes),
            );
            family(
                "edgebuf_oldest_pending_timestamp_seconds",
                "Wall-clock time (Unix seconds) at which the oldest pending record was logged; no sample when nothing is pending.",
                &s.oldest_pending_ts_ms
                    .map(|t| vec![(String::new(), seconds(t))])
                    .unwrap_or_default(),
            );
            family(
                "edgebuf_oldest_pending_age_seconds",
                "Age of the oldest pending record when this was written, by the wall clock; 0 when nothing is pending.",
                &[(
                    String::new(),
                    seconds(s.oldest_pending_ts_ms.map_or(0, |t| (self.now_ms - t).max(0))),
                )],
            );
            family(
                "edgebuf_first_pending_seq",
                "The seq of the oldest pending record; no sample when nothing is pending.",
                &s.first_pending_seq.map(one).unwrap_or_default(),
            );
            family(
                "edgebuf_last_seq",
                "The highest seq the buffer has handed out: it grows by one for each record logged (or requeued) and is never reused.",
                &one(s.high_water_mark),
            );
            family(
                "edgebuf_dead_letter_records",
                "Records the endpoint rejected on their own (400, 422, 413), kept in the dead-letter table.",
                &one(s.dead_letter_records),
            );
            family(
                "edgebuf_dead_letter_bytes",
                "Payload bytes of the dead letters.",
                &one(s.dead_letter_bytes),
            );
            family(
                "edgebuf_dead_letter_records_by_status",
                "Dead letters by the HTTP status they were rejected with.",
                &s.dead_letters_by_status
                    .iter()
                    .map(|(st, n)| (format!(",status=\"{st}\""), n.to_string()))
                    .collect::<Vec<_>>(),
            );
            family(
                "edgebuf_delivered_unreclaimed_records",
                "Delivered records whose rows the library has not deleted yet (not pending).",
                &one(s.delivered_unreclaimed_records),
            );
            family(
                "edgebuf_disk_bytes",
                "Size of the buffer file with its -wal and -shm.",
                &one(db + wal + shm),
            );
            family(
                "edgebuf_db_bytes",
                "Size of the buffer file itself.",
                &one(db),
            );
            family(
                "edgebuf_wal_bytes",
                "Size of the buffer file's -wal.",
                &one(wal),
            );
            family(
                "edgebuf_shm_bytes",
                "Size of the buffer file's -shm.",
                &one(shm),
            );
            family(
                "edgebuf_in_use",
                "1 while a process holds the buffer (its program runs), 0 when none does; no sample when that cannot be read.",
                &self.in_use.map(|u| one(u64::from(u))).unwrap_or_default(),
            );
            if let Some(cap) = self.capacity_max_bytes {
                family(
                    "edgebuf_capacity_max_bytes",
                    "The program's capacity.max_bytes, as given to edgebuf status: the payload bytes of pending records and dead letters that the buffer keeps at most.",
                    &one(cap),
                );
            }
            o
        }
    }
}

// ---------------------------------------------------------------------------------------------
// edgebuf export

fn export(a: ExportArgs) -> Outcome {
    let path = &a.path;
    let b = open_buffer(path)?;
    let source = serde_json::to_string(&a.source).expect("a string serialises");
    let stdout = io::stdout();
    let mut w = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = Vec::with_capacity(1024);
    let mut failed = None;
    let mut write = |line: &[u8]| match w.write_all(line) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            failed = Some(e);
            ControlFlow::Break(())
        }
    };
    let envelope = |line: &mut Vec<u8>, r: &edgebuf::inspect::Record| {
        line.clear();
        let rec = edgebuf::envelope::RecordRef {
            instance: r.instance,
            seq: r.seq,
            ts_ms: r.ts_ms,
            data: r.data,
            // "unset" for a record logged with an invalid clock: this process cannot know
            // whether the program's wall clock became valid in the boot the record was
            // logged in (docs/reference.md, the wire, timestamps).
            clock: r.clock,
        };
        edgebuf::envelope::push_envelope_fields(line, &rec, &source, true);
    };
    // One read transaction (the watermark and the rows agree).
    let read = if a.dead_letters {
        b.each_dead_letter(a.limit, |d| {
            envelope(&mut line, &d.record);
            line.extend_from_slice(
                format!(
                    ",\"dead_letter\":{{\"status\":{},\"reason\":{},\"dead_unix_ms\":{}}}",
                    d.status,
                    serde_json::to_string(d.reason).expect("a string serialises"),
                    d.dead_unix_ms
                )
                .as_bytes(),
            );
            line.extend_from_slice(b"}\n");
            write(&line)
        })
    } else {
        b.each_pending(a.limit, |r| {
            envelope(&mut line, r);
            line.extend_from_slice(b"}\n");
            write(&line)
        })
    };
    if let Some(e) = failed {
        return write_failure(e);
    }
    read.map_err(read_failure)?;
    if let Err(e) = w.flush() {
        return write_failure(e);
    }
    Ok(ExitCode::SUCCESS)
}

/// A reader that went away (`| head`) ends the export quietly.
fn write_failure(e: io::Error) -> Outcome {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::Other(format!("cannot write to stdout: {e}")))
    }
}

// ---------------------------------------------------------------------------------------------
// edgebuf check

fn check(a: CheckArgs) -> Outcome {
    let path = &a.path;
    let verdict_bad = |why: &str| {
        let prefix = format!("{}: ", shown(path));
        let why = printable(why.strip_prefix(&prefix).unwrap_or(why));
        // Only a file with SQLite's header and edgebuf's application_id is edgebuf's: anything
        // else is not damaged but foreign, and edgebuf never moves it.
        if !is_ours(path) {
            println!("{}: not an edgebuf buffer file ({why})", shown(path));
            println!("  edgebuf refuses to open it (EDGEBUF_ERR_CORRUPT) and never moves it.");
            return Ok(ExitCode::from(1));
        }
        println!("{}: DAMAGED ({why})", shown(path));
        println!(
            "  edgebuf moves a file found damaged at open aside to PATH.corrupt-UNIXMS and starts \
             empty (storage.on_corrupt=quarantine, the default), or refuses to open it (fail)."
        );
        Ok(ExitCode::from(1))
    };
    let b = match open_buffer(path) {
        Ok(b) => b,
        Err(Failure::Bad(m)) => {
            if m.contains("not an edgebuf buffer") || m.contains("newer than") {
                println!("{}", printable(&m));
                println!("  edgebuf refuses to open it (EDGEBUF_ERR_CORRUPT) and never moves it.");
                return Ok(ExitCode::from(1));
            }
            return verdict_bad(&m);
        }
        Err(f) => return Err(f),
    };
    let problems = match b.integrity_check() {
        Ok(p) => p,
        Err(e) if e.code() == edgebuf::Code::Corrupt => return verdict_bad(e.message()),
        Err(e) => return Err(read_failure(e)),
    };
    if !problems.is_empty() {
        println!(
            "{}: DAMAGED (integrity_check found {}):",
            shown(path),
            plural(problems.len() as u64, "problem", "problems")
        );
        for p in &problems {
            println!("  {}", printable(p));
        }
        println!(
            "  edgebuf moves a file found damaged at open aside to PATH.corrupt-UNIXMS and starts \
             empty (storage.on_corrupt=quarantine, the default), or refuses to open it (fail)."
        );
        return Ok(ExitCode::from(1));
    }
    let sum = match b.summary() {
        Ok(sum) => sum,
        Err(e) if e.code() == edgebuf::Code::Corrupt => return verdict_bad(e.message()),
        Err(e) => return Err(read_failure(e)),
    };
    println!(
        "{}: ok (integrity_check passed; edgebuf schema {}, instance {}, {} pending, {})",
        shown(path),
        b.schema_version(),
        b.instance(),
        sum.pending_records,
        plural(sum.dead_letter_records, "dead letter", "dead letters")
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Writing commands: requeue, compact, drain

/// Move dead letters back to the pending records, to be delivered again (after fixing the
/// receiver that rejected them).
///
/// Dead letters are records the endpoint rejected on their own (400, 422, 413). `requeue`
/// moves them, in their original order, behind the records already pending; the next program
/// that opens the buffer (or `edgebuf drain`) delivers them. It prints how many it moved.
///
/// Ids: each requeued record gets a new seq above every seq the buffer has used, so its id
/// (<instance>-<seq>) is new. It cannot keep its old seq: seqs are never reused, records are
/// delivered in seq order, and the old seq lies below records already delivered. A new id is
/// safe: the receiver answered 4xx to the record alone, so it never stored it, and there is
/// no earlier copy to deduplicate against (a requeued record that is then sent twice, after a
/// lost acknowledgement, carries its new id both times). `ts_ms` and the data are kept; use
/// `edgebuf export --dead-letters` first to note the old ids.
///
/// Needs the buffer to itself: refuses with exit code 3 while a program holds it open.
#[derive(Args)]
struct RequeueArgs {
    /// The buffer file.
    path: PathBuf,
    /// Only the dead letters rejected with this HTTP status (repeatable; default: all).
    #[arg(long = "status", value_name = "CODE")]
    statuses: Vec<i32>,
}

/// Give the buffer file's free space back to the file system, and print its size before and
/// after.
///
/// Deletes the delivered records the library had not reclaimed yet, returns the free pages
/// (SQLite incremental vacuum; with --full, VACUUM rebuilds the whole file, which also
/// defragments it but needs free disk space about the size of the file), and truncates the
/// -wal. Pending records and dead letters are kept. The library gives free pages back by
/// itself while it runs; this is for a file left large by a long outage.
///
/// Needs the buffer to itself: refuses with exit code 3 while a program holds it open.
#[derive(Args)]
struct CompactArgs {
    /// The buffer file.
    path: PathBuf,
    /// Rebuild the whole file (VACUUM) instead of only returning free pages.
    #[arg(long)]
    full: bool,
}

/// Deliver the backlog of a buffer file now, with progress, and exit 0 once nothing is pending.
///
/// Opens the buffer with the library, as the program that logs into it would, and sends its
/// pending records to --endpoint (retrying as the library does) until none is pending or
/// --timeout passes. Progress (records settled, rate, remaining) goes to stderr: a progress bar
/// on a terminal, else a line every --progress-interval seconds. Records the endpoint rejects
/// on their own become dead letters, as in the library. Use the same --source-id as the
/// program (and its other settings: --from-env reads the EDGEBUF_* variables it uses), so
/// the receiver deduplicates records that program already sent.
///
/// Exit codes: 0 nothing is pending; 4 records are still pending when the timeout passed or on
/// SIGINT/SIGTERM (they stay in the file, with their ids, for the next open); 3 the buffer is
/// held by another process (stop it first); 2 a bad option or an unusable file; 1 a damaged
/// file (left as it is).
#[derive(Args)]
struct DrainArgs {
    /// The buffer file.
    path: PathBuf,
    /// The URL to POST batches to (the `endpoint` key); required unless --from-env finds
    /// EDGEBUF_ENDPOINT.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Give up after this many seconds (records left stay on disk; exit code 4). 0: no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
    timeout: f64,
    /// The source.id written into every batch; use the one of the program that logged the
    /// records (default: the host name).
    #[arg(long, value_name = "ID")]
    source_id: Option<String>,
    /// An extra request header, "Name: value" (repeatable), as http.header.NAME.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Records per request at most (batch.max_records).
    #[arg(long, value_name = "N")]
    batch_max_records: Option<u64>,
    /// Request body bytes at most, before compression (batch.max_bytes).
    #[arg(long, value_name = "BYTES")]
    batch_max_bytes: Option<u64>,
    /// "json" or "ndjson" (format).
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// "none", "gzip" or "zstd" (http.compression).
    #[arg(long, value_name = "ENCODING")]
    compression: Option<String>,
    /// Whole-request timeout in milliseconds (http.timeout_ms).
    #[arg(long, value_name = "MS")]
    http_timeout_ms: Option<u64>,
    /// "env", "none" or a proxy URL (http.proxy).
    #[arg(long, value_name = "PROXY")]
    proxy: Option<String>,
    /// PEM file of the only trusted CA roots (tls.ca_file).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS (tls.cert_file; needs --key-file).
    #[arg(long, value_name = "FILE")]
    cert_file: Option<PathBuf>,
    /// Client key for mutual TLS (tls.key_file).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Any configuration key, KEY=VALUE (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Start from the EDGEBUF_* environment variables, as edgebuf_config_from_env does
    /// (the options above override them; the PATH argument overrides EDGEBUF_PATH).
    #[arg(long)]
    from_env: bool,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    progress_interval: f64,
    /// No progress output, only the final line.
    #[arg(short, long)]
    quiet: bool,
}

/// The failure of a writing command whose library open failed.
fn open_failure(path: &Path, cmd: &str, e: &edgebuf::Error) -> Failure {
    match e.code() {
        edgebuf::Code::Locked => {
            let by = match lock_holder(path) {
                Ok(Some(pid)) => format!(" (pid {pid})"),
                _ => String::new(),
            };
            Failure::Held(format!(
                "{} is held by another process{by}: stop it first; `edgebuf {cmd}` needs the \
                 buffer to itself (status, export and check work meanwhile). Nothing was changed.",
                shown(path)
            ))
        }
        edgebuf::Code::Corrupt => Failure::Bad(e.message().to_string()),
        _ => Failure::Other(e.message().to_string()),
    }
}

/// A configuration naming `path`, with damage left as found (never quarantined by a tool).
fn tool_config(path: &Path) -> Result<edgebuf::Config, Failure> {
    let mut cfg = edgebuf::Config::new();
    set_key(&mut cfg, "storage.on_corrupt", "fail")?;
    set_path(&mut cfg, path)?;
    Ok(cfg)
}

fn set_path(cfg: &mut edgebuf::Config, path: &Path) -> Result<(), Failure> {
    let p = path
        .to_str()
        .ok_or_else(|| Failure::Other(format!("{}: the path is not UTF-8", shown(path))))?;
    set_key(cfg, "path", p)
}

fn set_key(cfg: &mut edgebuf::Config, key: &str, value: &str) -> Result<(), Failure> {
    cfg.set(key, value)
        .map_err(|e| Failure::Other(e.message().to_string()))
}

/// Checks that `path` is an edgebuf buffer (read-only, never creating it), then opens it with
/// the library's store, which takes the buffer's lock.
fn open_for_writing(path: &Path, cmd: &str) -> Result<edgebuf::store::Store, Failure> {
    drop(open_buffer(path)?);
    let cfg = tool_config(path)?;
    edgebuf::store::Store::open(&cfg)
        .map(|(s, _)| s)
        .map_err(|e| open_failure(path, cmd, &e))
}

fn requeue(a: RequeueArgs) -> Outcome {
    let path = &a.path;
    let mut store = open_for_writing(path, "requeue")?;
    let pending_before = store.pending_records();
    let inst = store.instance().to_string();
    let r = store
        .requeue_dead_letters(&a.statuses)
        .map_err(|e| Failure::Other(e.message().to_string()))?;
    let left = store.dead_letter_records();
    drop(store);
    let which = if a.statuses.is_empty() {
        String::new()
    } else {
        let s: Vec<String> = a.statuses.iter().map(i32::to_string).collect();
        format!(" with HTTP status {}", s.join(" or "))
    };
    if r.records == 0 {
        println!(
            "{}: requeued 0 dead letters (none{which}); {} left",
            shown(path),
            plural(left, "dead letter", "dead letters")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (f, l) = r.new_seqs;
    println!(
        "{}: requeued {}{which} ({}): pending again as seq {f}..{l} (new ids {inst}-{f}..{inst}-{l}; \
         they were seq {}..{}), behind {} already pending; {} left",
        shown(path),
        plural(r.records, "dead letter", "dead letters"),
        human_bytes(r.bytes),
        r.old_seqs.0,
        r.old_seqs.1,
        plural(pending_before, "record", "records"),
        plural(left, "dead letter", "dead letters"),
    );
    Ok(ExitCode::SUCCESS)
}

fn compact(a: CompactArgs) -> Outcome {
    let path = &a.path;
    let sizes = || {
        let [db, wal, shm] = file_sizes(path);
        (db, wal, shm)
    };
    let before = sizes();
    let mut store = open_for_writing(path, "compact")?;
    store
        .compact(a.full)
        .map_err(|e| Failure::Other(e.message().to_string()))?;
    // Closing checkpoints and removes the -wal and -shm.
    drop(store);
    let after = sizes();
    let total = |s: (u64, u64, u64)| s.0 + s.1 + s.2;
    let (b, n) = (total(before), total(after));
    println!(
        "{}: {b} -> {n} bytes ({} -> {}, {} reclaimed; before: db {} + wal {} + shm {}, \
         after: db {} + wal {} + shm {})",
        shown(path),
        human_bytes(b),
        human_bytes(n),
        human_bytes(b.saturating_sub(n)),
        before.0,
        before.1,
        before.2,
        after.0,
        after.1,
        after.2,
    );
    Ok(ExitCode::SUCCESS)
}

mod drain {
    use super::*;
    use edgebuf::{Buffer, Code, Status};
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    use std::time::Instant;

    fn config(a: &DrainArgs) -> Result<edgebuf::Config, Failure> {
        let mut cfg = edgebuf::Config::new();
        if a.from_env {
            cfg.from_env()
                .map_err(|e| Failure::Other(e.message().to_string()))?;
        }
        set_key(&mut cfg, "storage.on_corrupt", "fail")?;
        set_path(&mut cfg, &a.path)?;
        let file = |p: &Path| {
            p.to_str()
                .map(str::to_string)
                .ok_or_else(|| Failure::Other(format!("{}: the path is not UTF-8", shown(p))))
        };
        let mut sets: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| sets.push((k.to_string(), v));
        if let Some(v) = &a.endpoint {
            put("endpoint", v.clone());
        }
        if let Some(v) = &a.source_id {
            put("source.id", v.clone());
        }
        for h in &a.headers {
            let (name, value) = h.split_once(':').ok_or_else(|| {
                Failure::Other("--header takes \"Name: value\" (a colon is missing)".into())
            })?;
            put(
                &format!("http.header.{}", name.trim()),
                value.trim().to_string(),
            );
        }
        if let Some(v) = a.batch_max_records {
            put("batch.max_records", v.to_string());
        }
        if let Some(v) = a.batch_max_bytes {
            put("batch.max_bytes", v.to_string());
        }
        if let Some(v) = &a.format {
            put("format", v.clone());
        }
        if let Some(v) = &a.compression {
            put("http.compression", v.clone());
        }
        if let Some(v) = a.http_timeout_ms {
            put("http.timeout_ms", v.to_string());
        }
        if let Some(v) = &a.proxy {
            put("http.proxy", v.clone());
        }
        if let Some(v) = &a.ca_file {
            put("tls.ca_file", file(v)?);
        }
        if let Some(v) = &a.cert_file {
            put("tls.cert_file", file(v)?);
        }
        if let Some(v) = &a.key_file {
            put("tls.key_file", file(v)?);
        }
        for kv in &a.sets {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| Failure::Other("--set takes KEY=VALUE".into()))?;
            if k.trim() == "path" {
                return Err(Failure::Other(
                    "--set path=...: the buffer file is the PATH argument".into(),
                ));
            }
            put(k.trim(), v.to_string());
        }
        for (k, v) in &sets {
            set_key(&mut cfg, k, v)?;
        }
        Ok(cfg)
    }

    /// SIGINT and SIGTERM set the returned flag (the drain then stops like at its timeout).
    fn catch_signals() -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        // SAFETY: plain libc calls on a local sigset_t, before any other thread starts.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        let f = Arc::clone(&flag);
        std::thread::spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is a valid signal set; `sig` a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                f.store(true, Ordering::SeqCst);
            }
        });
        flag
    }

    /// What the endpoint is doing, for the progress output.
    fn state(st: &Status) -> String {
        if st.consecutive_failures == 0 {
            return match st.last_http_status {
                0 => "connecting".into(),
                s => format!("last HTTP {s}"),
            };
        }
        let why = match st.last_http_status {
            0 => "no answer".to_string(),
            s => format!("HTTP {s}"),
        };
        let wait = if st.next_retry_in_ms > 0 {
            format!(
                ", retry in {:.1} s",
                f64::from(st.next_retry_in_ms) / 1000.0
            )
        } else {
            String::new()
        };
        format!(
            "endpoint failing ({why}, {} in a row{wait})",
            st.consecutive_failures
        )
    }

    enum Progress {
        None,
        Bar(ProgressBar),
        Lines { every: Duration, next: Instant },
    }

    impl Progress {
        fn update(&mut self, total: u64, st: &Status, start: Instant) {
            let settled = total.saturating_sub(st.pending_records);
            match self {
                Progress::None => {}
                Progress::Bar(bar) => {
                    let rate = settled as f64 / start.elapsed().as_secs_f64().max(1e-3);
                    let eta = if rate >= 1.0 {
                        format!(
                            ", ETA {}",
                            human_age((st.pending_records as f64 / rate * 1000.0) as i64)
                        )
                    } else {
                        String::new()
                    };
                    bar.set_position(settled);
                    bar.set_message(format!(
                        "{rate:.0}/s, {} left{eta}, {}",
                        st.pending_records,
                        state(st)
                    ));
                }
                Progress::Lines { every, next } => {
                    let now = Instant::now();
                    if now < *next {
                        return;
                    }
                    *next = now + *every;
                    let secs = start.elapsed().as_secs_f64().max(1e-3);
                    eprintln!(
                        "edgebuf drain: {settled}/{total} settled ({} delivered, {} dead-lettered), \
                         {} left, {:.0} records/s, {}",
                        st.delivered_total,
                        st.dead_lettered_total,
                        st.pending_records,
                        st.delivered_total as f64 / secs,
                        state(st)
                    );
                }
            }
        }

        fn finish(&self) {
            if let Progress::Bar(bar) = self {
                bar.finish_and_clear();
            }
        }
    }

    pub fn run(a: DrainArgs) -> Outcome {
        let path = &a.path;
        let seconds = |v: f64, zero_ok: bool| v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0));
        if !seconds(a.timeout, true) || !seconds(a.progress_interval, false) {
            return Err(Failure::Other(
                "--timeout and --progress-interval take a number of seconds".into(),
            ));
        }
        // It exists and is an edgebuf buffer: the library would create a missing file.
        drop(open_buffer(path)?);
        let cfg = config(&a)?;
        let interrupted = catch_signals();
        let buf = Buffer::open(&cfg, None).map_err(|e| open_failure(path, "drain", &e))?;
        let start = Instant::now();
        let deadline = (a.timeout > 0.0).then(|| start + Duration::from_secs_f64(a.timeout));
        let st = buf.status();
        let total = st.pending_records;
        if total == 0 {
            let _ = buf.close(Duration::from_secs(1));
            println!("{}: nothing pending", shown(path));
            return Ok(ExitCode::SUCCESS);
        }
        let mut progress = if a.quiet {
            Progress::None
        } else if io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} records, {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            Progress::Bar(bar)
        } else {
            eprintln!(
                "edgebuf drain: delivering {} ({}) from {} to {}",
                plural(total, "record", "records"),
                human_bytes(st.pending_bytes),
                shown(path),
                cfg.endpoint_redacted()
            );
            Progress::Lines {
                every: Duration::from_secs_f64(a.progress_interval),
                next: Instant::now() + Duration::from_secs_f64(a.progress_interval),
            }
        };
        let outcome = loop {
            let mut slice = Duration::from_millis(200);
            if let Some(d) = deadline {
                slice = slice.min(d.saturating_duration_since(Instant::now()));
            }
            let r = buf.flush(slice);
            let st = buf.status();
            progress.update(total, &st, start);
            match r {
                Ok(()) => break End::Drained,
                Err(e) if e.code() == Code::Timeout => {}
                Err(e) => break End::Failed(e),
            }
            if interrupted.load(Ordering::SeqCst) {
                break End::Stopped("interrupted".into());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break End::Stopped(format!("the timeout of {} s passed", a.timeout));
            }
        };
        progress.finish();
        let last = buf.status();
        let closed = buf.close(if matches!(outcome, End::Drained) {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        });
        let secs = start.elapsed().as_secs_f64();
        let dead = if last.dead_lettered_total > 0 {
            format!(
                "; {} rejected on their own became dead letters (edgebuf export --dead-letters)",
                plural(last.dead_lettered_total, "record", "records")
            )
        } else {
            String::new()
        };
        let why = match (outcome, closed) {
            (End::Drained, Ok(())) => {
                println!(
                    "{}: drained: {} delivered in {secs:.1} s ({:.0} records/s){dead}",
                    shown(path),
                    plural(last.delivered_total, "record", "records"),
                    last.delivered_total as f64 / secs.max(1e-3),
                );
                return Ok(ExitCode::SUCCESS);
            }
            (End::Failed(e), _) => {
                return Err(Failure::Other(format!(
                    "{}: delivery failed: {}",
                    shown(path),
                    e.message()
                )))
            }
            (End::Stopped(why), _) => why,
            (End::Drained, Err(e)) => format!("at close: {}", e.message()),
        };
        eprintln!(
            "edgebuf drain: {why}: {} still pending stay in {} for the next open \
             ({} delivered{dead}; {})",
            plural(last.pending_records, "record", "records"),
            shown(path),
            last.delivered_total,
            state(&last)
        );
        Ok(ExitCode::from(EXIT_NOT_DRAINED))
    }

    /// How a drain ended.
    enum End {
        Drained,
        /// The timeout passed, or a signal: records are left.
        Stopped(String),
        Failed(edgebuf::Error),
    }
}

mod receive;

#[cfg(test)]
mod tests {
    use super::receive::array_elements;
    use super::*;

    #[test]
    fn iso_utc_formats_unix_milliseconds() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(1_764_320_000_123), "2025-11-28T08:53:20.123Z");
        assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_utc(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn array_elements_splits_top_level_values_only() {
        let b = br#" [ {"a":[1,2],"s":"x,]}\""} , 3,"q"] "#;
        let e = array_elements(b).unwrap();
        assert_eq!(e, vec![&br#"{"a":[1,2],"s":"x,]}\""}"#[..], b"3", b"\"q\""]);
        assert_eq!(array_elements(b"[]").unwrap(), Vec::<&[u8]>::new());
        assert!(array_elements(b"{\"id\":1}").is_none(), "not an array");
        assert!(array_elements(b"[1,2] x").is_none(), "trailing data");
        assert!(array_elements(b"[1,2").is_none(), "unterminated");
        assert_eq!(array_elements(b"[1,]").unwrap(), vec![&b"1"[..], b""]);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }
}
