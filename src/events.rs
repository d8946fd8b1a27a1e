//! The event thread: callbacks run one at a time on a thread of the library, fed by a bounded
//! queue that coalesces DELIVERED and DROPPED events, so a slow callback never delays logging
//! or delivery.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, ThreadId};

pub const EVENT_ONLINE: i32 = 1;
pub const EVENT_OFFLINE: i32 = 2;
pub const EVENT_DELIVERED: i32 = 3;
pub const EVENT_DROPPED: i32 = 4;
pub const EVENT_DEAD_LETTER: i32 = 5;
pub const EVENT_STORAGE_ERROR: i32 = 6;
pub const EVENT_QUARANTINED: i32 = 7;
pub const EVENT_BACKLOG_HIGH: i32 = 8;
pub const EVENT_STORAGE_OK: i32 = 9;
pub const EVENT_REJECTED: i32 = 10;
pub const EVENT_BUDGET_EXHAUSTED: i32 = 11;

/// Every event kind with its name (`EDGEBUF_EVENT_` + name in the C header, which
/// tests/header.rs checks against this table).
pub const EVENT_KINDS: [(i32, &str); 11] = [
    (EVENT_ONLINE, "ONLINE"),
    (EVENT_OFFLINE, "OFFLINE"),
    (EVENT_DELIVERED, "DELIVERED"),
    (EVENT_DROPPED, "DROPPED"),
    (EVENT_DEAD_LETTER, "DEAD_LETTER"),
    (EVENT_STORAGE_ERROR, "STORAGE_ERROR"),
    (EVENT_QUARANTINED, "QUARANTINED"),
    (EVENT_BACKLOG_HIGH, "BACKLOG_HIGH"),
    (EVENT_STORAGE_OK, "STORAGE_OK"),
    (EVENT_REJECTED, "REJECTED"),
    (EVENT_BUDGET_EXHAUSTED, "BUDGET_EXHAUSTED"),
];

/// Events waiting beyond this are dropped (DELIVERED and DROPPED coalesce and never are).
const QUEUE_BOUND: usize = 1024;

/// One event as the callback sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: i32,
    pub count: u64,
    pub http_status: i32,
    pub message: String,
}

/// The user's callback. It runs on the event thread.
pub type Callback = Box<dyn Fn(&Event) + Send + Sync + 'static>;

struct State {
    queue: VecDeque<Event>,
    /// The event thread waits for `open` to hand the handle out before the first callback.
    started: bool,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// The producer side, cheap to clone into every thread that reports.
#[derive(Clone)]
pub struct Events {
    shared: Option<Arc<Shared>>,
}

/// The event thread itself; `stop` drains the queue and joins it.
pub struct EventThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl Events {
    /// A sink that drops everything: used when no callback is set.
    pub fn none() -> Events {
        Events { shared: None }
    }

    /// Starts the event thread for `cb`. Events queue up until `EventThread::start` is called.
    pub fn spawn(cb: Callback) -> std::io::Result<(Events, EventThread)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                started: false,
                stopping: false,
            }),
            cv: Condvar::new(),
        });
        let s2 = Arc::clone(&shared);
        let handle = crate::sys::spawn("edgebuf-events", move || run(&s2, cb))?;
        let thread_id = handle.thread().id();
        Ok((
            Events {
                shared: Some(Arc::clone(&shared)),
            },
            EventThread {
                shared,
                handle: Some(handle),
                thread_id,
            },
        ))
    }

    /// Queues an event; DELIVERED and DROPPED merge into a waiting event of the same kind.
    pub fn emit(&self, kind: i32, count: u64, http_status: i32, message: impl Into<String>) {
        let Some(shared) = &self.shared else { return };
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        if st.stopping {
            return;
        }
        if kind == EVENT_DELIVERED || kind == EVENT_DROPPED {
            // Only with the newest queued event, so order against other kinds is kept
            // (ONLINE stays before the DELIVERED of the same request).
            if let Some(last) = st.queue.back_mut().filter(|e| e.kind == kind) {
                last.count += count;
                if kind == EVENT_DELIVERED {
                    last.message = format!("{} records delivered", last.count);
                    last.http_status = http_status;
                } else {
                    last.message = format!("{} records dropped", last.count);
                }
                return;
            }
        }
        if st.queue.len() >= QUEUE_BOUND {
            return;
        }
        st.queue.push_back(Event {
            kind,
            count,
            http_status,
            message: message.into(),
        });
        shared.cv.notify_one();
    }
}

impl EventThread {
    /// Lets callbacks run (after `open` has handed out the handle).
    pub fn start(&self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.started = true;
            self.shared.cv.notify_one();
        }
    }

    /// The id of the event thread (the thread callbacks run on).
    pub fn thread_id(&self) -> ThreadId {
        self.thread_id
    }

    /// Runs what is queued, then ends the thread and waits for it (and a running callback).
    pub fn stop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.stopping = true;
            st.started = true;
            self.shared.cv.notify_one();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for EventThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, cb: Callback) {
    loop {
        let ev = {
            let Ok(mut st) = shared.state.lock() else {
                return;
            };
            loop {
                if st.started {
                    if let Some(ev) = st.queue.pop_front() {
                        break ev;
                    }
                    if st.stopping {
                        return;
                    }
                }
                st = match shared.cv.wait(st) {
                    Ok(g) => g,
                    Err(_) => return,
                };
            }
        };
        // A panicking callback must not take the thread (and later events) down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&ev)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as M;

    #[test]
    fn coalesces_and_runs_after_start() {
        let seen = Arc::new(M::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let (ev, mut th) = Events::spawn(Box::new(move |e: &Event| {
            s2.lock().unwrap().push(e.clone())
        }))
        .unwrap();
        ev.emit(EVENT_ONLINE, 0, 200, "online");
        ev.emit(EVENT_DELIVERED, 2, 200, "2 records delivered");
        ev.emit(EVENT_DELIVERED, 3, 200, "3 records delivered");
        assert!(seen.lock().unwrap().is_empty(), "no callback before start");
        th.start();
        th.stop();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].kind, EVENT_ONLINE);
        assert_eq!(seen[1].kind, EVENT_DELIVERED);
        assert_eq!(seen[1].count, 5);
        ev.emit(EVENT_ONLINE, 0, 0, "after stop is ignored");
    }
}
