//! The operating-system boundary: the few libc calls std does not wrap. Every unsafe block of
//! the core lives here, each with its SAFETY line.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Free and total bytes of the file system holding `path` (statvfs: f_bavail × f_frsize for free).
pub fn fs_space(path: &Path) -> io::Result<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value that the call overwrites.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `st` a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // The fields are 32-bit on some targets (armv7): widen before multiplying.
    #[allow(clippy::unnecessary_cast)]
    let frsize = st.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    let free = (st.f_bavail as u64).saturating_mul(frsize);
    #[allow(clippy::unnecessary_cast)]
    let total = (st.f_blocks as u64).saturating_mul(frsize);
    Ok((free, total))
}

/// Blocks every asynchronous signal in the calling thread, so that signals meant for the host
/// are never delivered to an edgebuf thread. Synchronous faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL)
/// stay unblocked. Called first thing in every thread the library starts.
pub fn block_async_signals() {
    // SAFETY: sigset_t is plain data, initialised by sigfillset before use; pthread_sigmask only
    // changes the calling thread's mask, never a disposition.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
            libc::sigdelset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: the spawn of the thread with this name, from this thread, fails.
    pub static FAIL_SPAWN: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Spawns a named library thread with asynchronous signals blocked.
pub fn spawn<F, T>(name: &str, f: F) -> io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[cfg(test)]
    if FAIL_SPAWN.with(|n| n.get()) == Some(name) {
        return Err(io::Error::other("thread spawn failure injected by a test"));
    }
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(1024 * 1024)
        .spawn(move || {
            block_async_signals();
            f()
        })
}

/// 16 hex digits from the operating system's random source.
pub fn random_instance() -> io::Result<String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// fsyncs the directory holding `path`, so that a file created, renamed or removed there
/// survives a power cut (docs/reference.md, guarantees). Best effort: a file system that cannot fsync a directory
/// gives no better guarantee either way.
pub fn fsync_dir(path: &std::path::Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// CLOCK_BOOTTIME in milliseconds: the time since boot, suspend included, which no one sets
/// (src/clock.rs). None if the call fails.
pub fn boottime_ms() -> Option<i64> {
    // SAFETY: timespec is plain old data; zeroed is a valid value that the call overwrites.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME is a clock id Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return None;
    }
    // tv_sec and tv_nsec are 32-bit on some targets (armv7): widen first.
    #[allow(clippy::unnecessary_cast)]
    let ms = (ts.tv_sec as i64)
        .saturating_mul(1000)
        .saturating_add(ts.tv_nsec as i64 / 1_000_000);
    Some(ms)
}
