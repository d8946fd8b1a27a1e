//! Counters shared by the threads of one buffer, and the status snapshot built from them.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Connectivity as the status reports it.
pub const CONNECTIVITY_UNKNOWN: u32 = 0;
pub const CONNECTIVITY_ONLINE: u32 = 1;
pub const CONNECTIVITY_OFFLINE: u32 = 2;

/// Every connectivity state with its name: the name is the `connectivity` value of the status
/// JSON, and `EDGEBUF_CONNECTIVITY_` + its upper case the C constant (tests/header.rs checks).
pub const CONNECTIVITY_STATES: [(u32, &str); 3] = [
    (CONNECTIVITY_UNKNOWN, "unknown"),
    (CONNECTIVITY_ONLINE, "online"),
    (CONNECTIVITY_OFFLINE, "offline"),
];

/// Live counters. Writers update them with relaxed atomics; `snapshot` reads them in an order
/// that keeps `pending_records` from ever going negative.
#[derive(Default, Debug)]
pub struct Counters {
    pub logged_total: AtomicU64,
    pub delivered_total: AtomicU64,
    pub dropped_total: AtomicU64,
    pub dead_lettered_total: AtomicU64,
    pub pending_at_open: AtomicU64,
    /// Payload bytes of every pending record (memory + disk + in flight + held).
    pub pending_bytes: AtomicU64,
    pub dead_letter_records: AtomicU64,
    pub failed_attempts_total: AtomicU64,
    pub consecutive_failures: AtomicU32,
    /// Monotonic deadline of the current wait, in ms since open; 0 when not waiting.
    pub retry_at_ms: AtomicU64,
    pub last_success_unix_ms: AtomicI64,
    pub last_http_status: AtomicI32,
    pub connectivity: AtomicU32,
    pub storage_degraded: AtomicU32,
    /// Keep-alive resends (not failed attempts); for tests and diagnostics.
    pub resends_total: AtomicU64,
    /// Records of delivered batches the endpoint reported as rejected (OTLP partial success).
    pub rejected_total: AtomicU64,
    /// Request body bytes sent, as on the wire (after compression), every attempt counted.
    pub sent_bytes_total: AtomicU64,
    /// What `http.budget_bytes` still allows in the current period (src/delivery/budget.rs).
    pub budget_left_bytes: BudgetLeft,
}

/// `budget_left_bytes`: [`NO_BUDGET`] until a budget says otherwise.
#[derive(Debug)]
pub struct BudgetLeft(pub AtomicU64);

impl Default for BudgetLeft {
    fn default() -> BudgetLeft {
        BudgetLeft(AtomicU64::new(NO_BUDGET))
    }
}

/// The accounting (docs/reference.md, C API): at every moment
///
/// ```text
/// pending_records = pending_at_open + logged_total
///                 - delivered_total - dropped_total - dead_lettered_total
/// ```
///
/// and `pending_bytes` is the payload of those pending records. Every change of these
/// counters is one of the transitions below, which move a record's count and its bytes
/// together; intake is counted before a record can be settled, so the difference never
/// underflows.
impl Counters {
    /// At open: what the file holds.
    pub fn opened(&self, pending: u64, pending_bytes: u64, dead_letters: u64) {
        self.pending_at_open.store(pending, Relaxed);
        self.pending_bytes.store(pending_bytes, Relaxed);
        self.dead_letter_records.store(dead_letters, Relaxed);
    }

    /// One record of `bytes` accepted by a log call.
    #[inline]
    pub fn logged(&self, bytes: u64) {
        self.logged_total.fetch_add(1, Relaxed);
        self.pending_bytes.fetch_add(bytes, Relaxed);
    }

    /// Records accepted, then refused to their log call (sync mode, the disk full or failing):
    /// as if never logged.
    pub fn unlogged(&self, n: u64, bytes: u64) {
        self.logged_total.fetch_sub(n, Relaxed);
        self.pending_bytes.fetch_sub(bytes, Relaxed);
    }

    /// Records removed undelivered: the capacity policy, TTL, or lost at close.
    pub fn dropped(&self, n: u64, bytes: u64) {
        self.pending_bytes.fetch_sub(bytes, Relaxed);
        self.dropped_total.fetch_add(n, Relaxed);
    }

    /// Records the endpoint accepted.
    pub fn delivered(&self, n: u64, bytes: u64) {
        self.pending_bytes.fetch_sub(bytes, Relaxed);
        self.delivered_total.fetch_add(n, Relaxed);
    }

    /// Records moved to the dead letters.
    pub fn dead_lettered(&self, n: u64, bytes: u64) {
        self.pending_bytes.fetch_sub(bytes, Relaxed);
        self.dead_lettered_total.fetch_add(n, Relaxed);
    }

    /// Records pending now, by the invariant of docs/reference.md, C API.
    pub fn pending_records(&self) -> u64 {
        // Settlements are read before intake: a record is logged before it can be settled,
        // so the difference never underflows.
        let settled = self.delivered_total.load(Relaxed)
            + self.dropped_total.load(Relaxed)
            + self.dead_lettered_total.load(Relaxed);
        let intake = self.pending_at_open.load(Relaxed) + self.logged_total.load(Relaxed);
        intake.saturating_sub(settled)
    }
}

/// A status snapshot; the field names are those of `edgebuf_status_t` and of the JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub pending_records: u64,
    pub pending_bytes: u64,
    pub disk_bytes: u64,
    pub logged_total: u64,
    pub delivered_total: u64,
    pub dropped_total: u64,
    pub dead_letter_records: u64,
    pub failed_attempts_total: u64,
    pub consecutive_failures: u32,
    pub next_retry_in_ms: u32,
    pub oldest_pending_age_ms: u64,
    pub last_success_unix_ms: i64,
    pub last_http_status: i32,
    pub connectivity: u32,
    pub storage_degraded: u32,
    pub pending_at_open: u64,
    pub dead_lettered_total: u64,
    pub rejected_total: u64,
    pub sent_bytes_total: u64,
    /// What the byte budget still allows in the current period; `u64::MAX` without a budget.
    pub budget_left_bytes: u64,
}

/// `budget_left_bytes` when no budget is set.
pub const NO_BUDGET: u64 = u64::MAX;

impl Status {
    /// Reads the counters. The caller fills `disk_bytes`, `next_retry_in_ms` and
    /// `oldest_pending_age_ms`, which need clocks and files.
    pub fn from_counters(c: &Counters) -> Status {
        let delivered_total = c.delivered_total.load(Relaxed);
        let dropped_total = c.dropped_total.load(Relaxed);
        let dead_lettered_total = c.dead_lettered_total.load(Relaxed);
        let pending_at_open = c.pending_at_open.load(Relaxed);
        let logged_total = c.logged_total.load(Relaxed);
        let pending_records = (pending_at_open + logged_total)
            .saturating_sub(delivered_total + dropped_total + dead_lettered_total);
        Status {
            pending_records,
            pending_bytes: if pending_records == 0 {
                0
            } else {
                c.pending_bytes.load(Relaxed)
            },
            disk_bytes: 0,
            logged_total,
            delivered_total,
            dropped_total,
            dead_letter_records: c.dead_letter_records.load(Relaxed),
            failed_attempts_total: c.failed_attempts_total.load(Relaxed),
            consecutive_failures: c.consecutive_failures.load(Relaxed),
            next_retry_in_ms: 0,
            oldest_pending_age_ms: 0,
            last_success_unix_ms: c.last_success_unix_ms.load(Relaxed),
            last_http_status: c.last_http_status.load(Relaxed),
            connectivity: c.connectivity.load(Relaxed),
            storage_degraded: c.storage_degraded.load(Relaxed),
            pending_at_open,
            dead_lettered_total,
            rejected_total: c.rejected_total.load(Relaxed),
            sent_bytes_total: c.sent_bytes_total.load(Relaxed),
            budget_left_bytes: c.budget_left_bytes.0.load(Relaxed),
        }
    }

    /// The JSON form: every field a number, except `connectivity` (a string) and
    /// `storage_degraded` (a boolean). Keys in struct order.
    pub fn to_json(&self) -> String {
        let connectivity = CONNECTIVITY_STATES
            .iter()
            .find(|(v, _)| *v == self.connectivity)
            .map_or("unknown", |(_, name)| name);
        format!(
            concat!(
                "{{\"pending_records\":{},\"pending_bytes\":{},\"disk_bytes\":{},",
                "\"logged_total\":{},\"delivered_total\":{},\"dropped_total\":{},",
                "\"dead_letter_records\":{},\"failed_attempts_total\":{},",
                "\"consecutive_failures\":{},\"next_retry_in_ms\":{},",
                "\"oldest_pending_age_ms\":{},\"last_success_unix_ms\":{},",
                "\"last_http_status\":{},\"connectivity\":\"{}\",\"storage_degraded\":{},",
                "\"pending_at_open\":{},\"dead_lettered_total\":{},",
                "\"rejected_total\":{},\"sent_bytes_total\":{},\"budget_left_bytes\":{}}}"
            ),
            self.pending_records,
            self.pending_bytes,
            self.disk_bytes,
            self.logged_total,
            self.delivered_total,
            self.dropped_total,
            self.dead_letter_records,
            self.failed_attempts_total,
            self.consecutive_failures,
            self.next_retry_in_ms,
            self.oldest_pending_age_ms,
            self.last_success_unix_ms,
            self.last_http_status,
            connectivity,
            self.storage_degraded != 0,
            self.pending_at_open,
            self.dead_lettered_total,
            self.rejected_total,
            self.sent_bytes_total,
            self.budget_left_bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_field_with_its_type() {
        let s = Status {
            pending_records: 3,
            connectivity: CONNECTIVITY_OFFLINE,
            storage_degraded: 1,
            last_success_unix_ms: -1,
            ..Status::default()
        };
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 20);
        assert_eq!(o["pending_records"], 3);
        assert_eq!(o["connectivity"], "offline");
        assert_eq!(o["storage_degraded"], true);
        assert_eq!(o["last_success_unix_ms"], -1);
        for (k, v) in o {
            if k != "connectivity" && k != "storage_degraded" {
                assert!(v.is_number(), "{k}");
            }
        }
    }

    #[test]
    fn pending_follows_the_invariant() {
        let c = Counters::default();
        c.pending_at_open.store(5, Relaxed);
        c.logged_total.store(10, Relaxed);
        c.delivered_total.store(7, Relaxed);
        c.dropped_total.store(2, Relaxed);
        c.dead_lettered_total.store(1, Relaxed);
        assert_eq!(c.pending_records(), 5);
        assert_eq!(Status::from_counters(&c).pending_records, 5);
    }

    /// Counters past 2^32, as a device running for years reaches them: exact in the snapshot
    /// and the JSON on every target (tests/targets runs these tests on 32-bit armv7 too).
    #[test]
    fn counters_past_two_to_the_32_are_exact() {
        const BIG: u64 = 1 << 32;
        let c = Counters::default();
        c.pending_at_open.store(BIG + 5, Relaxed);
        c.logged_total.store(3 * BIG + 11, Relaxed);
        c.delivered_total.store(2 * BIG + 7, Relaxed);
        c.dropped_total.store(BIG + 1, Relaxed);
        c.dead_lettered_total.store(3, Relaxed);
        c.pending_bytes.store(5 * BIG, Relaxed);
        c.dead_letter_records.store(BIG + 9, Relaxed);
        c.failed_attempts_total.store(u64::MAX - 1, Relaxed);
        c.last_success_unix_ms.store(1_796_000_000_123, Relaxed);
        c.logged_total.fetch_add(BIG, Relaxed);
        let s = Status::from_counters(&c);
        assert_eq!(s.logged_total, 4 * BIG + 11);
        assert_eq!(
            s.pending_records,
            (BIG + 5) + (4 * BIG + 11) - (2 * BIG + 7) - (BIG + 1) - 3
        );
        assert_eq!(s.pending_bytes, 5 * BIG);
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["logged_total"].as_u64(), Some(4 * BIG + 11));
        assert_eq!(v["pending_records"].as_u64(), Some(s.pending_records));
        assert_eq!(v["dead_letter_records"].as_u64(), Some(BIG + 9));
        assert_eq!(v["failed_attempts_total"].as_u64(), Some(u64::MAX - 1));
        assert_eq!(v["last_success_unix_ms"].as_i64(), Some(1_796_000_000_123));
        assert_eq!(v["budget_left_bytes"].as_u64(), Some(u64::MAX));
    }

    #[test]
    fn rejected_and_sent_bytes_come_from_the_counters() {
        let c = Counters::default();
        c.rejected_total.store(7, Relaxed);
        c.sent_bytes_total.store((1 << 33) + 5, Relaxed);
        let s = Status::from_counters(&c);
        assert_eq!(
            (s.rejected_total, s.sent_bytes_total, s.budget_left_bytes),
            (7, (1 << 33) + 5, u64::MAX)
        );
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["rejected_total"], 7);
        assert_eq!(v["sent_bytes_total"].as_u64(), Some((1 << 33) + 5));
    }
}
