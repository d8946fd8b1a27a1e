//! The C boundary: argument checks, panic catching, result codes and the thread's last error.
//! Nothing else lives here; every behaviour is in the safe core (`Buffer`, `Config`).
#![allow(non_camel_case_types)]
// The exported functions take raw pointers from C by design; each checks for NULL and
// documents what the caller must guarantee, and every dereference has its SAFETY line.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod types;
pub use types::*;

use crate::config::Config;
use crate::error::{Code, Error};
use crate::events::Event;
use crate::Buffer;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A configuration object: keys and values plus the event callback.
pub struct edgebuf_config {
    cfg: Config,
    cb: edgebuf_event_cb,
    user_data: UserData,
}

/// An open buffer handle.
pub struct edgebuf {
    buffer: Buffer,
    /// Calls inside the library on this handle; close waits for them.
    active: AtomicUsize,
    closing: AtomicBool,
}

#[derive(Clone, Copy)]
struct UserData(*mut c_void);
// SAFETY: the caller promises user_data may be used from the library's event thread until
// edgebuf_close returns (docs/reference.md, C API, Events); the library never dereferences it.
unsafe impl Send for UserData {}
// SAFETY: as above; it is only passed back to the caller's callback.
unsafe impl Sync for UserData {}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, turning an error into its code and a panic into EDGEBUF_ERR_INTERNAL, and sets
/// the thread's last error on failure.
fn guard(f: impl FnOnce() -> Result<(), Error>) -> edgebuf_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => EDGEBUF_OK,
        Ok(Err(e)) => {
            set_last_error(e.message());
            e.code().value()
        }
        Err(_) => {
            set_last_error(
                "internal error: a bug in edgebuf was caught at the C boundary; please report it",
            );
            EDGEBUF_ERR_INTERNAL
        }
    }
}

fn null(what: &str) -> Error {
    Error::invalid_argument(format!("{what} is NULL"))
}

/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the API contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::invalid_config(format!("{what} is not valid UTF-8")))
}

/// Enters a call on a live handle; close waits until every entered call has left.
fn with_handle(h: *mut edgebuf_t, f: impl FnOnce(&Buffer) -> Result<(), Error>) -> edgebuf_result {
    guard(|| {
        // SAFETY: NULL or a handle from edgebuf_open that close has not freed (docs/reference.md, C API:
        // a call after close returned is undefined behaviour).
        let h = unsafe { h.as_ref() }.ok_or_else(|| null("handle"))?;
        h.active.fetch_add(1, Ordering::SeqCst);
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&h.active);
        if h.closing.load(Ordering::SeqCst) {
            return Err(Error::new(Code::Closed, "the handle is closing"));
        }
        f(&h.buffer)
    })
}

fn ms(t: u32) -> Duration {
    Duration::from_millis(u64::from(t))
}

/// Creates an empty configuration (every key at its default). Free it with
/// edgebuf_config_free. Returns NULL only if memory is exhausted. A config object may be used
/// by one thread at a time.
#[no_mangle]
pub extern "C" fn edgebuf_config_new() -> *mut edgebuf_config_t {
    catch_unwind(|| {
        Box::into_raw(Box::new(edgebuf_config {
            cfg: Config::new(),
            cb: None,
            user_data: UserData(std::ptr::null_mut()),
        }))
    })
    .unwrap_or(std::ptr::null_mut())
}

/// Sets one key (the README's Configuration table). Checks syntax and range: an unknown key or a bad value is
/// EDGEBUF_ERR_INVALID_CONFIG with a message naming the key, and the old value stays. An
/// empty value restores the default. Combinations are checked by edgebuf_open.
#[no_mangle]
pub extern "C" fn edgebuf_config_set(
    cfg: *mut edgebuf_config_t,
    key: *const c_char,
    value: *const c_char,
) -> edgebuf_result {
    guard(|| {
        // SAFETY: NULL or a config from edgebuf_config_new, used by one thread at a time.
        let cfg = unsafe { cfg.as_mut() }.ok_or_else(|| null("cfg"))?;
        // SAFETY: NULL or NUL-terminated strings per the API contract.
        let key = unsafe { c_str(key, "key") }?;
        // SAFETY: as above.
        let value = unsafe { c_str(value, "value") }.map_err(|e| {
            // An unknown key is the first thing to tell; never echo a key as given.
            Config::check_key(key).err().unwrap_or_else(|| {
                Error::new(
                    e.code(),
                    format!(
                        "the value of {}: {}",
                        Config::printable_name(key),
                        e.message()
                    ),
                )
            })
        })?;
        cfg.cfg.set(key, value)
    })
}

/// Applies every EDGEBUF_* environment variable that names a key (EDGEBUF_ENDPOINT,
/// EDGEBUF_CAPACITY_WHEN_FULL, EDGEBUF_HTTP_HEADER_X_API_KEY, ...). All or nothing: a bad
/// value is EDGEBUF_ERR_INVALID_CONFIG naming the variable, and nothing is applied.
#[no_mangle]
pub extern "C" fn edgebuf_config_from_env(cfg: *mut edgebuf_config_t) -> edgebuf_result {
    guard(|| {
        // SAFETY: NULL or a config from edgebuf_config_new, used by one thread at a time.
        let cfg = unsafe { cfg.as_mut() }.ok_or_else(|| null("cfg"))?;
        cfg.cfg.from_env()
    })
}

/// Sets the event callback; a NULL `cb` removes it. Callbacks run one at a time on a library
/// thread; `user_data` must stay valid until edgebuf_close returns. A callback may call
/// status, status_json, log and retry_now on its own handle; close, flush and sync from it
/// return EDGEBUF_ERR_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn edgebuf_config_set_event_callback(
    cfg: *mut edgebuf_config_t,
    cb: edgebuf_event_cb,
    user_data: *mut c_void,
) -> edgebuf_result {
    guard(|| {
        // SAFETY: NULL or a config from edgebuf_config_new, used by one thread at a time.
        let cfg = unsafe { cfg.as_mut() }.ok_or_else(|| null("cfg"))?;
        cfg.cb = cb;
        cfg.user_data = UserData(user_data);
        Ok(())
    })
}

/// Frees a configuration. NULL is a no-op. Handles opened from it keep their own copy.
#[no_mangle]
pub extern "C" fn edgebuf_config_free(cfg: *mut edgebuf_config_t) {
    let _ = catch_unwind(|| {
        if !cfg.is_null() {
            // SAFETY: a config from edgebuf_config_new, freed exactly once.
            drop(unsafe { Box::from_raw(cfg) });
        }
    });
}

fn callback_of(cb: edgebuf_event_cb, ud: UserData) -> Option<crate::events::Callback> {
    let f = cb?;
    Some(Box::new(move |ev: &Event| {
        let msg = CString::new(ev.message.replace('\0', " ")).unwrap_or_default();
        let c = edgebuf_event_t {
            struct_size: std::mem::size_of::<edgebuf_event_t>() as u32,
            kind: ev.kind,
            count: ev.count,
            http_status: ev.http_status,
            message: msg.as_ptr(),
        };
        let ud = ud;
        // SAFETY: the caller's callback with its user_data, as registered; `c` and `msg`
        // outlive the call.
        unsafe { f(&c, ud.0) };
    }))
}

/// Opens the buffer file (creating it if needed) and starts delivery. `cfg` is copied and may
/// be freed afterwards. On success `*out` is the handle; on failure `*out` is NULL and the
/// code says why (INVALID_CONFIG, LOCKED, CORRUPT, STORAGE, ...). Blocks for the file's open
/// (a scan of its pending records), never on the network.
#[no_mangle]
pub extern "C" fn edgebuf_open(
    cfg: *const edgebuf_config_t,
    out: *mut *mut edgebuf_t,
) -> edgebuf_result {
    guard(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: out is non-NULL and points to writable storage for a pointer.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: NULL or a config from edgebuf_config_new.
        let cfg = unsafe { cfg.as_ref() }.ok_or_else(|| null("cfg"))?;
        let buffer = Buffer::open_paused(&cfg.cfg, callback_of(cfg.cb, cfg.user_data))?;
        let h = Box::into_raw(Box::new(edgebuf {
            buffer,
            active: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        }));
        // SAFETY: out is non-NULL (checked above); h is a fresh, valid handle.
        unsafe {
            *out = h;
            (*h).buffer.start_events();
        }
        Ok(())
    })
}

/// Accepts one record: exactly one JSON value of `len` bytes (UTF-8, nested at most 128 deep,
/// at most record.max_bytes). The bytes are copied. Async mode returns once the record is
/// queued in memory (about a microsecond; up to memory.max_wait_ms when the disk cannot keep
/// up); sync mode returns once it is committed and fsync'd. Errors: INVALID_RECORD (nothing
/// stored), FULL (capacity policy), STORAGE (sync mode while the disk fails), CLOSED.
#[no_mangle]
pub extern "C" fn edgebuf_log(
    h: *mut edgebuf_t,
    record: *const c_char,
    len: usize,
) -> edgebuf_result {
    with_handle(h, |b| {
        if record.is_null() {
            return Err(null("record"));
        }
        // SAFETY: record is non-NULL and the caller promises `len` readable bytes. The slice
        // is only built when len is within record.max_bytes, so a wild length is refused first.
        let max = b.record_max_bytes();
        if len as u64 > max {
            return Err(Error::invalid_record(format!(
                "the record is {len} bytes, longer than record.max_bytes ({max})"
            )));
        }
        // SAFETY: as above.
        let bytes = unsafe { std::slice::from_raw_parts(record.cast::<u8>(), len) };
        b.log(bytes)
    })
}

/// Waits up to `timeout_ms` until every record logged before the call is committed and
/// fsync'd. OK, TIMEOUT (nothing is lost), STORAGE while storage is degraded, CLOSED.
#[no_mangle]
pub extern "C" fn edgebuf_sync(h: *mut edgebuf_t, timeout_ms: u32) -> edgebuf_result {
    with_handle(h, |b| b.sync(ms(timeout_ms)))
}

/// Waits up to `timeout_ms` until every record logged before the call is delivered, dropped or
/// dead-lettered; skips batch.linger_ms, obeys backoff and Retry-After. 0 only checks. OK or
/// TIMEOUT (an outage, a 401: nothing is lost).
#[no_mangle]
pub extern "C" fn edgebuf_flush(h: *mut edgebuf_t, timeout_ms: u32) -> edgebuf_result {
    with_handle(h, |b| b.flush(ms(timeout_ms)))
}

/// The network is back: cuts a running backoff short (not a Retry-After wait). Never blocks.
#[no_mangle]
pub extern "C" fn edgebuf_retry_now(h: *mut edgebuf_t) -> edgebuf_result {
    with_handle(h, |b| {
        b.retry_now();
        Ok(())
    })
}

/// Fills `*out`. Set `out->struct_size = sizeof(edgebuf_status_t)` first (EDGEBUF_STATUS_INIT);
/// the library writes only fields that end within it and sets struct_size to the end of the
/// last field written. A struct_size below EDGEBUF_STATUS_SIZE_V1 is INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn edgebuf_status(h: *mut edgebuf_t, out: *mut edgebuf_status_t) -> edgebuf_result {
    with_handle(h, |b| {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: out is non-NULL and points to at least its struct_size field.
        let size = unsafe { (*out).struct_size };
        if size < EDGEBUF_STATUS_SIZE_V1 {
            return Err(Error::invalid_argument(format!(
                "out->struct_size is {size}; set it to sizeof(edgebuf_status_t) (at least {EDGEBUF_STATUS_SIZE_V1})"
            )));
        }
        let mut st = edgebuf_status_t::from_status(&b.status());
        // The fields after the first release are all 8 bytes wide: the caller gets those that
        // end within its struct_size.
        let n = EDGEBUF_STATUS_SIZE_V1
            + (size.min(EDGEBUF_STATUS_SIZE_V2) - EDGEBUF_STATUS_SIZE_V1) / 8 * 8;
        st.struct_size = n;
        // SAFETY: the caller's struct is at least `size >= n` bytes and `n <= sizeof(ours)`;
        // the bytes are copied without assuming the caller's alignment.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&st as *const edgebuf_status_t).cast::<u8>(),
                out.cast::<u8>(),
                n as usize,
            )
        };
        Ok(())
    })
}

/// Writes the status as a NUL-terminated JSON object (the field names of edgebuf_status_t).
/// On OK `*len_out` is its length without the NUL. When `cap` is too small (or `buf` is NULL
/// with cap 0, a size query) it returns EDGEBUF_ERR_BUFFER_TOO_SMALL with the size needed,
/// NUL included, in `*len_out`, and leaves `buf` untouched.
#[no_mangle]
pub extern "C" fn edgebuf_status_json(
    h: *mut edgebuf_t,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> edgebuf_result {
    with_handle(h, |b| {
        if len_out.is_null() {
            return Err(null("len_out"));
        }
        if buf.is_null() && cap != 0 {
            return Err(null("buf"));
        }
        let json = b.status_json();
        let need = json.len() + 1;
        if cap < need {
            // SAFETY: len_out is non-NULL.
            unsafe { *len_out = need };
            return Err(Error::new(
                Code::BufferTooSmall,
                format!("the status needs {need} bytes including the NUL; cap is {cap}"),
            ));
        }
        // SAFETY: buf has room for `cap >= need` bytes; len_out is non-NULL.
        unsafe {
            std::ptr::copy_nonoverlapping(json.as_ptr(), buf.cast::<u8>(), json.len());
            *buf.add(json.len()) = 0;
            *len_out = json.len();
        }
        Ok(())
    })
}

/// Stops intake, writes the in-memory queue to disk, delivers for at most `timeout_ms`, waits
/// for calls already inside the library, stops every library thread and callback, releases the
/// file lock and frees the handle. Returns within `timeout_ms` plus the time the final write
/// takes. OK when nothing is pending, TIMEOUT when records stay on disk for the next open,
/// STORAGE when records held in memory could not be written. The handle is freed in every
/// case except INVALID_ARGUMENT returned to a callback of this handle.
#[no_mangle]
pub extern "C" fn edgebuf_close(h: *mut edgebuf_t, timeout_ms: u32) -> edgebuf_result {
    guard(|| {
        // SAFETY: NULL or a live handle from edgebuf_open.
        let hr = unsafe { h.as_ref() }.ok_or_else(|| null("handle"))?;
        if hr.buffer.in_callback() {
            return Err(Error::invalid_argument(
                "edgebuf_close cannot be called from an event callback of the same handle",
            ));
        }
        if hr.closing.swap(true, Ordering::SeqCst) {
            return Err(Error::new(Code::Closed, "the handle is already closing"));
        }
        hr.buffer.interrupt();
        while hr.active.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = hr.buffer.close(ms(timeout_ms));
        // Calls that entered while the buffer closed saw `closing` and are leaving; the
        // handle must outlive them too.
        while hr.active.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: h came from Box::into_raw in edgebuf_open; no call is inside any more and
        // calls after close returns are undefined behaviour per the contract.
        drop(unsafe { Box::from_raw(h) });
        r
    })
}

/// This thread's message for its last failed call: "" when none, never NULL. Valid until this
/// thread's next edgebuf call.
#[no_mangle]
pub extern "C" fn edgebuf_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The static name of a result code ("EDGEBUF_ERR_FULL"); unknown values give
/// "EDGEBUF_UNKNOWN".
#[no_mangle]
pub extern "C" fn edgebuf_result_name(code: edgebuf_result) -> *const c_char {
    crate::error::Code::from_value(code)
        .map_or(c"EDGEBUF_UNKNOWN", crate::error::Code::c_name)
        .as_ptr()
}

/// The library version, static "MAJOR.MINOR.PATCH".
#[no_mangle]
pub extern "C" fn edgebuf_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
