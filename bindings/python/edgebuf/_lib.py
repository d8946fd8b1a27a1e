"""Loads libedgebuf and declares the C API (include/edgebuf.h) for ctypes.

The library is loaded from exactly one of three places, in this order:
1. the path in the EDGEBUF_LIB environment variable (nothing else is tried when it is set);
2. libedgebuf.so inside this package (a wheel carries it there);
3. the system's loader: "libedgebuf.so.0" as ld.so finds it (LD_LIBRARY_PATH, the ldconfig
   cache, the standard directories: where `make install` or the libedgebuf0 package put it).
Nothing else: no directory is searched for a checkout, so a library planted near the
package is never loaded.
"""

import ctypes
import os
from pathlib import Path

c_result = ctypes.c_int32  # edgebuf_result


class EventStruct(ctypes.Structure):
    """edgebuf_event_t."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("kind", ctypes.c_int32),
        ("count", ctypes.c_uint64),
        ("http_status", ctypes.c_int32),
        ("message", ctypes.c_char_p),
    ]


class StatusStruct(ctypes.Structure):
    """edgebuf_status_t (EDGEBUF_STATUS_SIZE_V2: 152 bytes; the first release's fields end at
    EDGEBUF_STATUS_SIZE_V1, 128)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("reserved0", ctypes.c_uint32),
        ("pending_records", ctypes.c_uint64),
        ("pending_bytes", ctypes.c_uint64),
        ("disk_bytes", ctypes.c_uint64),
        ("logged_total", ctypes.c_uint64),
        ("delivered_total", ctypes.c_uint64),
        ("dropped_total", ctypes.c_uint64),
        ("dead_letter_records", ctypes.c_uint64),
        ("failed_attempts_total", ctypes.c_uint64),
        ("consecutive_failures", ctypes.c_uint32),
        ("next_retry_in_ms", ctypes.c_uint32),
        ("oldest_pending_age_ms", ctypes.c_uint64),
        ("last_success_unix_ms", ctypes.c_int64),
        ("last_http_status", ctypes.c_int32),
        ("connectivity", ctypes.c_uint32),
        ("storage_degraded", ctypes.c_uint32),
        ("reserved1", ctypes.c_uint32),
        ("pending_at_open", ctypes.c_uint64),
        ("dead_lettered_total", ctypes.c_uint64),
        ("rejected_total", ctypes.c_uint64),
        ("sent_bytes_total", ctypes.c_uint64),
        ("budget_left_bytes", ctypes.c_uint64),
    ]


STATUS_SIZE_V1 = 128
STATUS_SIZE_V2 = 152
assert ctypes.sizeof(StatusStruct) == STATUS_SIZE_V2

# void (*edgebuf_event_cb)(const edgebuf_event_t *ev, void *user_data)
EVENT_CB = ctypes.CFUNCTYPE(None, ctypes.POINTER(EventStruct), ctypes.c_void_p)


def _candidates():
    env = os.environ.get("EDGEBUF_LIB")
    if env:
        return [env]
    shipped = Path(__file__).resolve().parent / "libedgebuf.so"
    out = [str(shipped)] if shipped.is_file() else []
    out.append("libedgebuf.so.0")
    return out


def load():
    """Returns (CDLL, path) with every function's argtypes and restype declared."""
    errors = []
    for cand in _candidates():
        try:
            lib = ctypes.CDLL(cand)
        except OSError as e:
            errors.append(f"{cand}: {e}")
            continue
        _declare(lib)
        return lib, cand
    raise ImportError(
        "edgebuf: cannot load libedgebuf ("
        + "; ".join(errors)
        + "). Install a wheel of edgebuf (it carries the library), install the library where "
        "the system's loader finds libedgebuf.so.0 (make install, then ldconfig or "
        "LD_LIBRARY_PATH), or set EDGEBUF_LIB to the path of libedgebuf.so."
    )


def _declare(lib):
    vp = ctypes.c_void_p
    cp = ctypes.c_char_p
    u32 = ctypes.c_uint32
    size_t = ctypes.c_size_t
    protos = {
        "edgebuf_config_new": (vp, []),
        "edgebuf_config_set": (c_result, [vp, cp, cp]),
        "edgebuf_config_from_env": (c_result, [vp]),
        "edgebuf_config_set_event_callback": (c_result, [vp, EVENT_CB, vp]),
        "edgebuf_config_free": (None, [vp]),
        "edgebuf_open": (c_result, [vp, ctypes.POINTER(vp)]),
        "edgebuf_log": (c_result, [vp, cp, size_t]),
        "edgebuf_sync": (c_result, [vp, u32]),
        "edgebuf_flush": (c_result, [vp, u32]),
        "edgebuf_retry_now": (c_result, [vp]),
        "edgebuf_status": (c_result, [vp, ctypes.POINTER(StatusStruct)]),
        "edgebuf_status_json": (c_result, [vp, cp, size_t, ctypes.POINTER(size_t)]),
        "edgebuf_close": (c_result, [vp, u32]),
        "edgebuf_last_error": (cp, []),
        "edgebuf_result_name": (cp, [c_result]),
        "edgebuf_version": (cp, []),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
