//! The C types of docs/reference.md, C API: integer codes (never Rust enums: an unknown value coming
//! from C would be undefined behaviour), the status and event structs.
#![allow(non_camel_case_types)]

use crate::status::Status;
use std::ffi::{c_char, c_void};

/// EDGEBUF_OK or one of EDGEBUF_ERR_*.
pub type edgebuf_result = i32;

pub const EDGEBUF_OK: edgebuf_result = 0;
pub const EDGEBUF_ERR_INVALID_ARGUMENT: edgebuf_result = 1;
pub const EDGEBUF_ERR_INVALID_CONFIG: edgebuf_result = 2;
pub const EDGEBUF_ERR_INVALID_RECORD: edgebuf_result = 3;
pub const EDGEBUF_ERR_FULL: edgebuf_result = 4;
pub const EDGEBUF_ERR_TIMEOUT: edgebuf_result = 5;
pub const EDGEBUF_ERR_CLOSED: edgebuf_result = 6;
pub const EDGEBUF_ERR_STORAGE: edgebuf_result = 7;
pub const EDGEBUF_ERR_LOCKED: edgebuf_result = 8;
pub const EDGEBUF_ERR_CORRUPT: edgebuf_result = 9;
pub const EDGEBUF_ERR_BUFFER_TOO_SMALL: edgebuf_result = 10;
pub const EDGEBUF_ERR_INTERNAL: edgebuf_result = 99;

/// Event kinds (edgebuf_event_t.kind).
pub const EDGEBUF_EVENT_ONLINE: i32 = 1;
pub const EDGEBUF_EVENT_OFFLINE: i32 = 2;
pub const EDGEBUF_EVENT_DELIVERED: i32 = 3;
pub const EDGEBUF_EVENT_DROPPED: i32 = 4;
pub const EDGEBUF_EVENT_DEAD_LETTER: i32 = 5;
pub const EDGEBUF_EVENT_STORAGE_ERROR: i32 = 6;
pub const EDGEBUF_EVENT_QUARANTINED: i32 = 7;
pub const EDGEBUF_EVENT_BACKLOG_HIGH: i32 = 8;
pub const EDGEBUF_EVENT_STORAGE_OK: i32 = 9;
pub const EDGEBUF_EVENT_REJECTED: i32 = 10;
pub const EDGEBUF_EVENT_BUDGET_EXHAUSTED: i32 = 11;

/// Connectivity states (edgebuf_status_t.connectivity).
pub const EDGEBUF_CONNECTIVITY_UNKNOWN: u32 = 0;
pub const EDGEBUF_CONNECTIVITY_ONLINE: u32 = 1;
pub const EDGEBUF_CONNECTIVITY_OFFLINE: u32 = 2;

/// End offset of the last field of the first release of edgebuf_status_t.
pub const EDGEBUF_STATUS_SIZE_V1: u32 = 128;
/// End offset of budget_left_bytes (the fields up to the second release of the struct).
pub const EDGEBUF_STATUS_SIZE_V2: u32 = 152;

/// Opaque handle of an open buffer.
pub type edgebuf_t = super::edgebuf;
/// Opaque, string-keyed configuration.
pub type edgebuf_config_t = super::edgebuf_config;

/// Buffer status. Set struct_size = sizeof(edgebuf_status_t) before edgebuf_status (see
/// EDGEBUF_STATUS_INIT). Fields are only ever appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct edgebuf_status_t {
    pub struct_size: u32,
    pub reserved0: u32,
    /// Accepted and not yet settled (in memory + on disk + in flight).
    pub pending_records: u64,
    /// Their length as given to edgebuf_log.
    pub pending_bytes: u64,
    /// st_size of the database + -wal + -shm.
    pub disk_bytes: u64,
    /// Accepted by edgebuf_log since open.
    pub logged_total: u64,
    /// Acknowledged (2xx) by the endpoint since open.
    pub delivered_total: u64,
    /// Removed by the capacity policy or record.ttl_ms since open.
    pub dropped_total: u64,
    /// Records in the dead-letter table now.
    pub dead_letter_records: u64,
    /// Requests since open that got no 2xx.
    pub failed_attempts_total: u64,
    /// Failed attempts in a row now; a 2xx resets it.
    pub consecutive_failures: u32,
    /// 0 when not waiting.
    pub next_retry_in_ms: u32,
    /// Age of the oldest pending record, 0 when none.
    pub oldest_pending_age_ms: u64,
    /// 0 when none since open.
    pub last_success_unix_ms: i64,
    /// Status of the last answer of any class; 0 when none.
    pub last_http_status: i32,
    /// EDGEBUF_CONNECTIVITY_*.
    pub connectivity: u32,
    /// 1 while the disk fails and records are held in memory only.
    pub storage_degraded: u32,
    pub reserved1: u32,
    /// Pending records found in the file at open.
    pub pending_at_open: u64,
    /// Records moved to the dead letters since open.
    pub dead_lettered_total: u64,
    /// Records of delivered batches the endpoint reported as rejected (OTLP partial success);
    /// already counted in delivered_total.
    pub rejected_total: u64,
    /// Request body bytes sent since open, as on the wire (after compression), every attempt
    /// counted.
    pub sent_bytes_total: u64,
    /// What http.budget_bytes still allows in the current period; UINT64_MAX when no budget is
    /// set.
    pub budget_left_bytes: u64,
}

const _: () = assert!(
    std::mem::offset_of!(edgebuf_status_t, dead_lettered_total) + 8
        == EDGEBUF_STATUS_SIZE_V1 as usize
);
const _: () = assert!(
    std::mem::offset_of!(edgebuf_status_t, budget_left_bytes) + 8
        == EDGEBUF_STATUS_SIZE_V2 as usize
);
const _: () = assert!(std::mem::size_of::<edgebuf_status_t>() == EDGEBUF_STATUS_SIZE_V2 as usize);

impl edgebuf_status_t {
    pub(crate) fn from_status(s: &Status) -> edgebuf_status_t {
        edgebuf_status_t {
            struct_size: EDGEBUF_STATUS_SIZE_V2,
            reserved0: 0,
            pending_records: s.pending_records,
            pending_bytes: s.pending_bytes,
            disk_bytes: s.disk_bytes,
            logged_total: s.logged_total,
            delivered_total: s.delivered_total,
            dropped_total: s.dropped_total,
            dead_letter_records: s.dead_letter_records,
            failed_attempts_total: s.failed_attempts_total,
            consecutive_failures: s.consecutive_failures,
            next_retry_in_ms: s.next_retry_in_ms,
            oldest_pending_age_ms: s.oldest_pending_age_ms,
            last_success_unix_ms: s.last_success_unix_ms,
            last_http_status: s.last_http_status,
            connectivity: s.connectivity,
            storage_degraded: s.storage_degraded,
            reserved1: 0,
            pending_at_open: s.pending_at_open,
            dead_lettered_total: s.dead_lettered_total,
            rejected_total: s.rejected_total,
            sent_bytes_total: s.sent_bytes_total,
            budget_left_bytes: s.budget_left_bytes,
        }
    }
}

/// One event, valid during the callback only (`struct edgebuf_event`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edgebuf_event {
    /// sizeof the struct the library filled; fields are only appended.
    pub struct_size: u32,
    /// EDGEBUF_EVENT_*.
    pub kind: i32,
    /// Records concerned.
    pub count: u64,
    /// 0 where none applies.
    pub http_status: i32,
    /// NUL-terminated sentence, valid during the call.
    pub message: *const c_char,
}

/// One event, valid during the callback only.
pub type edgebuf_event_t = edgebuf_event;

/// Event callback: runs on a library thread, one at a time.
pub type edgebuf_event_cb =
    Option<unsafe extern "C" fn(ev: *const edgebuf_event_t, user_data: *mut c_void)>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The C struct carries 64-bit values whole on 32-bit targets too.
    #[test]
    fn status_struct_keeps_64_bit_values() {
        let s = Status {
            pending_records: (1 << 32) + 1,
            logged_total: u64::MAX,
            pending_at_open: (1 << 40) + 3,
            dead_lettered_total: (1 << 33) + 2,
            last_success_unix_ms: 1_796_000_000_123,
            sent_bytes_total: (1 << 35) + 1,
            budget_left_bytes: u64::MAX,
            ..Status::default()
        };
        let c = edgebuf_status_t::from_status(&s);
        assert_eq!(c.struct_size, EDGEBUF_STATUS_SIZE_V2);
        assert_eq!({ c.pending_records }, (1 << 32) + 1);
        assert_eq!({ c.logged_total }, u64::MAX);
        assert_eq!({ c.pending_at_open }, (1 << 40) + 3);
        assert_eq!({ c.dead_lettered_total }, (1 << 33) + 2);
        assert_eq!({ c.last_success_unix_ms }, 1_796_000_000_123);
        assert_eq!({ c.sent_bytes_total }, (1 << 35) + 1);
        assert_eq!({ c.budget_left_bytes }, u64::MAX);
        assert_eq!(std::mem::align_of::<edgebuf_status_t>(), 8);
    }
}
