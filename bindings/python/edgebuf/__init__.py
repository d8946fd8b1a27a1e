"""edgebuf: a durable on-device buffer for ML inference records (Python binding, ctypes).

    import edgebuf

    with edgebuf.Buffer(path="/var/lib/app/predictions.db",
                        endpoint="https://ingest.example.com/v1/predictions",
                        config={"http.header.X-Api-Key": key}) as buf:
        buf.log({"model": "resnet18", "class": 3, "score": 0.92})
        buf.flush(10)          # optional: raises edgebuf.Timeout while offline
        print(buf.status().delivered_total)

Records are stored in SQLite and delivered in the background; the README of the repository describes the contract.
A Buffer is safe to use from any number of threads.
"""

import ctypes
import dataclasses
import enum
import json
import math
import os
import threading
import weakref

from . import _lib

__all__ = [
    "Buffer",
    "Status",
    "Connectivity",
    "Event",
    "EventKind",
    "Error",
    "InvalidArgument",
    "InvalidConfig",
    "InvalidRecord",
    "Full",
    "Timeout",
    "Closed",
    "StorageError",
    "Locked",
    "Corrupt",
    "BufferTooSmall",
    "InternalError",
    "version",
    "library_path",
]

_L, library_path = _lib.load()
"""The path or name libedgebuf was loaded from."""


def version():
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return _L.edgebuf_version().decode()


# --- errors -----------------------------------------------------------------------------------


class Error(Exception):
    """A failed edgebuf call. ``code`` is the library's result code (EDGEBUF_ERR_*), ``name``
    its name ("EDGEBUF_ERR_FULL") and ``message`` the library's sentence about it."""

    code = None

    def __init__(self, code, name, message):
        super().__init__(f"{name}: {message}" if message else name)
        self.code = code
        self.name = name
        self.message = message


class InvalidArgument(Error):
    """A NULL argument; flush, sync or close called from the buffer's own event callback."""

    code = 1


class InvalidConfig(Error):
    """Unknown key, bad value, missing path or endpoint; the message names the key."""

    code = 2


class InvalidRecord(Error):
    """Not exactly one JSON value, not UTF-8, too deep or too long: nothing was stored."""

    code = 3


class Full(Error):
    """The record was not stored: the buffer is full (capacity.when_full)."""

    code = 4


class Timeout(Error):
    """flush or sync ran out of time; nothing is lost."""

    code = 5


class Closed(Error):
    """The buffer is closed or closing."""

    code = 6


class StorageError(Error):
    """The disk failed."""

    code = 7


class Locked(Error):
    """Another handle or process holds this buffer file."""

    code = 8


class Corrupt(Error):
    """The buffer file is damaged (storage.on_corrupt=fail) or not an edgebuf file."""

    code = 9


class BufferTooSmall(Error):
    """Internal to status_json; never raised by this package."""

    code = 10


class InternalError(Error):
    """A bug in the library."""

    code = 99


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        InvalidConfig,
        InvalidRecord,
        Full,
        Timeout,
        Closed,
        StorageError,
        Locked,
        Corrupt,
        BufferTooSmall,
        InternalError,
    )
}


def _error(code, message):
    name = _L.edgebuf_result_name(code).decode()
    return _BY_CODE.get(code, Error)(code, name, message)


def _check(code):
    """Raises the exception for a result code, with this thread's edgebuf_last_error.

    Called right after the failing call on the same thread: the message is thread-local and
    valid until this thread's next edgebuf call."""
    if code != 0:
        raise _error(code, _L.edgebuf_last_error().decode("utf-8", "replace"))


# --- status and events --------------------------------------------------------------------------


class Connectivity(enum.IntEnum):
    UNKNOWN = 0
    ONLINE = 1
    OFFLINE = 2


class EventKind(enum.IntEnum):
    ONLINE = 1
    OFFLINE = 2
    DELIVERED = 3
    DROPPED = 4
    DEAD_LETTER = 5
    STORAGE_ERROR = 6
    QUARANTINED = 7
    BACKLOG_HIGH = 8
    STORAGE_OK = 9
    REJECTED = 10
    BUDGET_EXHAUSTED = 11


@dataclasses.dataclass(frozen=True)
class Event:
    """One library event. ``kind`` is an EventKind (or a plain int for a kind this binding
    does not know yet)."""

    kind: int
    count: int
    http_status: int
    message: str


@dataclasses.dataclass(frozen=True)
class Status:
    """edgebuf_status_t, with the C API's field names."""

    pending_records: int
    pending_bytes: int
    disk_bytes: int
    logged_total: int
    delivered_total: int
    dropped_total: int
    dead_letter_records: int
    failed_attempts_total: int
    consecutive_failures: int
    next_retry_in_ms: int
    oldest_pending_age_ms: int
    last_success_unix_ms: int
    last_http_status: int
    connectivity: Connectivity
    storage_degraded: bool
    pending_at_open: int
    dead_lettered_total: int
    rejected_total: int
    sent_bytes_total: int
    budget_left_bytes: int


def _status_from_c(st):
    values = {}
    for f in dataclasses.fields(Status):
        v = getattr(st, f.name)
        if f.name == "connectivity":
            try:
                v = Connectivity(v)
            except ValueError:
                pass
        elif f.name == "storage_degraded":
            v = bool(v)
        values[f.name] = v
    return Status(**values)


# --- configuration keys ---------------------------------------------------------------------------

# The fixed keys, in the order of the README's Configuration table (a test of the library checks
# that the two lists agree). Keyword arguments name them with "_" for "." (commit_interval_ms);
# this table resolves the ambiguity ("dead_letter_max_records" is "dead_letter.max_records").
_KEYS = (
    "path",
    "endpoint",
    "source.id",
    "durability",
    "commit.interval_ms",
    "commit.sync_interval_ms",
    "memory.max_records",
    "memory.max_bytes",
    "memory.max_wait_ms",
    "batch.max_records",
    "batch.max_bytes",
    "batch.linger_ms",
    "delivery.order",
    "retry.initial_ms",
    "retry.max_ms",
    "http.timeout_ms",
    "http.connect_timeout_ms",
    "http.compression",
    "http.max_bytes_per_s",
    "http.budget_bytes",
    "http.budget_period_ms",
    "http.proxy",
    "format",
    "clock.valid_after_unix_ms",
    "tls.ca_file",
    "tls.cert_file",
    "tls.key_file",
    "capacity.max_bytes",
    "capacity.max_records",
    "capacity.when_full",
    "disk.min_free_bytes",
    "record.max_bytes",
    "record.ttl_ms",
    "dead_letter.max_records",
    "alert.pending_records",
    "storage.on_corrupt",
)
_KWARG_TO_KEY = {k.replace(".", "_"): k for k in _KEYS}


def _key_of_kwarg(name):
    """commit_interval_ms -> commit.interval_ms. A name not in the table gets its first "_"
    turned into "." (a key newer than this binding); the library rejects unknown keys."""
    if name in _KWARG_TO_KEY:
        return _KWARG_TO_KEY[name]
    return name.replace("_", ".", 1)


def _value_str(key, value):
    if isinstance(value, bool):
        raise TypeError(f"edgebuf: the value of {key} must be a string or a number, not bool")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        value = value.decode()
    return str(value)


def _millis(timeout_s):
    """Seconds to the library's uint32 milliseconds, rounded up, clamped."""
    if timeout_s is None:
        raise TypeError("edgebuf: a timeout in seconds is required")
    if isinstance(timeout_s, float) and math.isnan(timeout_s):
        raise ValueError("edgebuf: the timeout is NaN")
    if timeout_s <= 0:
        return 0
    if math.isinf(timeout_s):
        return 0xFFFFFFFF
    return min(int(math.ceil(timeout_s * 1000.0)), 0xFFFFFFFF)


# --- the buffer ------------------------------------------------------------------------------------

_OPEN, _CLOSING, _CLOSED = 0, 1, 2
_STATUS_JSON_CAP = 1024  # first buffer status_json tries (a variable for the tests)


class _Handle:
    """The C handle and what must live until edgebuf_close returns. Buffer owns it; the event
    trampoline refers to this object, never to the Buffer, so a forgotten Buffer can still be
    garbage-collected (and closed by its finalizer)."""

    def __init__(self):
        self.h = None
        self.cv = threading.Condition()
        self.active = 0
        self.state = _OPEN
        self.callback = None  # the CFUNCTYPE object: C holds it until close returns
        self.callback_thread = None  # ident of the thread running a callback right now
        self.close_result = None

    def enter(self):
        with self.cv:
            if self.state != _OPEN:
                raise _error(6, "the buffer is closed")
            self.active += 1
            return self.h

    def leave(self):
        with self.cv:
            self.active -= 1
            if self.active == 0:
                self.cv.notify_all()

    def close(self, ms):
        """True when nothing is pending, False when records stay on disk (TIMEOUT)."""
        if self.callback_thread is not None and self.callback_thread == threading.get_ident():
            raise _error(1, "close cannot be called from an event callback of the same buffer")
        with self.cv:
            if self.state == _CLOSED:
                return self.close_result
            if self.state == _CLOSING:
                # Another thread is closing: wait for it, as file.close() would not fail.
                while self.state != _CLOSED:
                    self.cv.wait()
                return self.close_result
            self.state = _CLOSING
            while self.active:
                self.cv.wait()
            h = self.h
        code, message = 99, "edgebuf_close did not return"
        try:
            # The handle is freed whatever the result (INVALID_ARGUMENT comes back only to a
            # callback of this handle, refused above).
            code = _L.edgebuf_close(h, ms)
            message = _L.edgebuf_last_error().decode("utf-8", "replace") if code else ""
        finally:
            with self.cv:
                self.h = None
                self.callback = None  # no callback runs once edgebuf_close has returned
                self.close_result = code == 0
                self.state = _CLOSED
                self.cv.notify_all()
        if code not in (0, 5):
            raise _error(code, message)
        return self.close_result


def _finalize(handle):
    """Backstop for a Buffer nobody closed (garbage collection or interpreter exit): close with
    a zero timeout, so what is in memory is written to disk for the next open."""
    try:
        if handle.state == _OPEN:
            handle.close(0)
    except Exception:
        pass


def _make_trampoline(handle, on_event):
    def trampoline(ev_p, _user_data):
        ev = ev_p.contents
        try:
            kind = EventKind(ev.kind)
        except ValueError:
            kind = ev.kind
        event = Event(
            kind=kind,
            count=ev.count,
            http_status=ev.http_status,
            message=(ev.message or b"").decode("utf-8", "replace"),
        )
        handle.callback_thread = threading.get_ident()
        try:
            on_event(event)
        finally:
            handle.callback_thread = None
        # An exception in on_event is reported by ctypes (sys.unraisablehook) and ignored.

    return _lib.EVENT_CB(trampoline)


class Buffer:
    """An open buffer.

    Buffer(config=None, *, on_event=None, from_env=False, **keys)

    ``keys`` are configuration keys with "_" for "." (``commit_interval_ms=100``,
    ``capacity_when_full="reject"``); ``config`` is a dict of keys as the README's Configuration table spells
    them, for those a keyword cannot name (``{"http.header.X-Api-Key": key}``). A key may not
    be given both ways. ``from_env=True`` then applies every EDGEBUF_* environment variable,
    which overrides both. Values may be str, int or os.PathLike.

    ``on_event(event)`` receives Event objects on a library thread, one at a time. It may call
    status, log and retry_now on this buffer; flush, sync and close from it raise
    InvalidArgument. An exception it raises is reported through sys.unraisablehook.

    Raises InvalidConfig, Locked (another handle or process holds the file), Corrupt or
    StorageError.
    """

    def __init__(self, config=None, *, on_event=None, from_env=False, **keys):
        self._handle = handle = _Handle()
        settings = {}
        for k, v in (config or {}).items():
            settings[k] = _value_str(k, v)
        for name, v in keys.items():
            k = _key_of_kwarg(name)
            if k in settings:
                raise TypeError(f"edgebuf: {k} is given twice ({name}= and config)")
            if v is None:
                continue
            settings[k] = _value_str(k, v)

        cfg = _L.edgebuf_config_new()
        if not cfg:
            raise MemoryError("edgebuf_config_new")
        try:
            for k, v in settings.items():
                if "\0" in k or "\0" in v:
                    raise _error(2, "a configuration key or value contains a NUL character")
                _check(_L.edgebuf_config_set(cfg, k.encode(), v.encode()))
            if from_env:
                _check(_L.edgebuf_config_from_env(cfg))
            if on_event is not None:
                if not callable(on_event):
                    raise TypeError("edgebuf: on_event must be callable")
                handle.callback = _make_trampoline(handle, on_event)
                _check(_L.edgebuf_config_set_event_callback(cfg, handle.callback, None))
            h = ctypes.c_void_p()
            _check(_L.edgebuf_open(cfg, ctypes.byref(h)))
            handle.h = h.value
        finally:
            _L.edgebuf_config_free(cfg)
        self._finalizer = weakref.finalize(self, _finalize, handle)

    # -- context manager --

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    # -- calls --

    def _call(self, fn, *args):
        h = self._handle.enter()
        try:
            _check(fn(h, *args))
        finally:
            self._handle.leave()

    def log(self, record):
        """Accepts one record. bytes, bytearray, memoryview and str are taken as JSON text
        as-is; anything else (dict, list, numbers, ...) is serialised with json.dumps. The
        library copies it. Raises InvalidRecord (nothing stored), Full, StorageError (sync
        mode while the disk fails) or Closed."""
        if isinstance(record, bytes):
            data = record
        elif isinstance(record, (bytearray, memoryview)):
            data = bytes(record)
        elif isinstance(record, str):
            data = record.encode("utf-8", "surrogatepass")
        else:
            try:
                data = json.dumps(
                    record, ensure_ascii=False, allow_nan=False, separators=(",", ":")
                ).encode("utf-8")
            except (TypeError, ValueError) as e:
                raise InvalidRecord(3, "EDGEBUF_ERR_INVALID_RECORD", f"json.dumps: {e}") from e
        self._call(_L.edgebuf_log, data, len(data))

    def flush(self, timeout_s):
        """Waits up to timeout_s seconds until every record logged before the call is
        delivered, dropped or dead-lettered. Raises Timeout (an outage, a 401: nothing is
        lost). 0 only checks."""
        self._call(_L.edgebuf_flush, _millis(timeout_s))

    def sync(self, timeout_s):
        """Waits up to timeout_s seconds until every record logged before the call is committed
        and fsync'd. Raises Timeout, or StorageError while storage is degraded."""
        self._call(_L.edgebuf_sync, _millis(timeout_s))

    def retry_now(self):
        """The network is back: cuts a running backoff short (not a Retry-After wait)."""
        self._call(_L.edgebuf_retry_now)

    def status(self):
        """The counters and state, as a Status."""
        st = _lib.StatusStruct()
        st.struct_size = ctypes.sizeof(st)
        self._call(_L.edgebuf_status, ctypes.byref(st))
        return _status_from_c(st)

    def status_json(self):
        """The status as the library's JSON text (str)."""
        h = self._handle.enter()
        try:
            n = ctypes.c_size_t(0)
            cap = _STATUS_JSON_CAP
            while True:
                buf = ctypes.create_string_buffer(cap)
                code = _L.edgebuf_status_json(h, buf, cap, ctypes.byref(n))
                if code == 10:  # BUFFER_TOO_SMALL: n is the size needed, which may grow
                    cap = n.value + 256
                    continue
                _check(code)
                return buf.raw[: n.value].decode("utf-8")
        finally:
            self._handle.leave()

    def close(self, timeout_s=5.0):
        """Stops intake, writes what is in memory to disk, delivers for at most timeout_s
        seconds and releases the file. Returns True when nothing is pending and False when
        records stay on disk for the next open (nothing is lost). Raises StorageError when
        records held in memory could not be written. Waits for calls running in other threads.
        Closing again does nothing and returns the first result."""
        result = self._handle.close(_millis(timeout_s))
        self._finalizer.detach()
        return result

    @property
    def closed(self):
        return self._handle.state != _OPEN

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<edgebuf.Buffer {state}>"
