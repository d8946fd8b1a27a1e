"""Tests of the Python binding against a real HTTP receiver on 127.0.0.1."""

import dataclasses
import gc
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import edgebuf

STATUS_FIELDS = [
    "pending_records",
    "pending_bytes",
    "disk_bytes",
    "logged_total",
    "delivered_total",
    "dropped_total",
    "dead_letter_records",
    "failed_attempts_total",
    "consecutive_failures",
    "next_retry_in_ms",
    "oldest_pending_age_ms",
    "last_success_unix_ms",
    "last_http_status",
    "connectivity",
    "storage_degraded",
    "pending_at_open",
    "dead_lettered_total",
    "rejected_total",
    "sent_bytes_total",
    "budget_left_bytes",
]


class Receiver:
    """Acknowledges batches with `status` (200 unless a test sets an outage) and records every
    envelope it acknowledged, by id."""

    def __init__(self):
        self.status = 200
        self.lock = threading.Lock()
        self.ids = {}  # id -> times received
        self.data = {}  # id -> parsed data
        self.headers = []
        recv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code = recv.status
                if 200 <= code < 300:
                    batch = json.loads(body)
                    with recv.lock:
                        recv.headers.append({k.lower(): v for k, v in self.headers.items()})
                        for env in batch:
                            recv.ids[env["id"]] = recv.ids.get(env["id"], 0) + 1
                            recv.data[env["id"]] = env["data"]
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ingest"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def received(self):
        with self.lock:
            return dict(self.ids), dict(self.data)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def keys(tmp_path, receiver):
    """Keyword arguments for a fast buffer delivering to the receiver."""
    return dict(
        path=tmp_path / "buffer.db",
        endpoint=receiver.url,
        source_id="py-test",
        commit_interval_ms=20,
        batch_linger_ms=10,
        batch_max_records=100,
        retry_initial_ms=50,
        retry_max_ms=200,
        http_proxy="none",
    )


def test_library_loaded():
    assert edgebuf.version().count(".") == 2
    assert "edgebuf" in edgebuf.library_path


def test_delivers_500_records(keys, receiver):
    with edgebuf.Buffer(**keys) as buf:
        for i in range(500):
            if i % 3 == 0:
                buf.log({"i": i, "label": "cat"})
            elif i % 3 == 1:
                buf.log(b'{"i": %d, "label": "cat"}' % i)
            else:
                buf.log('{"i": %d, "label": "cat"}' % i)
        buf.flush(30)
        st = buf.status()
    ids, data = receiver.received()
    assert len(ids) == 500
    assert all(n == 1 for n in ids.values())
    assert sorted(d["i"] for d in data.values()) == list(range(500))
    assert st.logged_total == 500 and st.delivered_total == 500 and st.pending_records == 0
    assert buf.closed


def test_status_json_grows_its_buffer(keys, monkeypatch):
    monkeypatch.setattr(edgebuf, "_STATUS_JSON_CAP", 8)
    with edgebuf.Buffer(**keys) as buf:
        assert json.loads(buf.status_json())["logged_total"] == 0


def test_status_dataclass(keys, receiver):
    with edgebuf.Buffer(**keys) as buf:
        buf.log([1, 2, 3])
        buf.flush(10)
        st = buf.status()
        js = json.loads(buf.status_json())
    assert isinstance(st, edgebuf.Status)
    assert dataclasses.is_dataclass(st)
    assert [f.name for f in dataclasses.fields(st)] == STATUS_FIELDS
    assert st.connectivity is edgebuf.Connectivity.ONLINE
    assert st.storage_degraded is False
    assert st.last_http_status == 200 and st.last_success_unix_ms > 0
    assert st.pending_bytes == 0 and st.disk_bytes > 0
    assert st.pending_records == (
        st.pending_at_open
        + st.logged_total
        - st.delivered_total
        - st.dropped_total
        - st.dead_lettered_total
    )
    assert set(js) >= set(STATUS_FIELDS)
    assert js["delivered_total"] == 1 and js["connectivity"] == "online"


def test_invalid_record(keys):
    with edgebuf.Buffer(**keys) as buf:
        with pytest.raises(edgebuf.InvalidRecord) as ei:
            buf.log(b'{"unterminated": ')
        e = ei.value
        assert isinstance(e, edgebuf.Error)
        assert e.code == 3 and e.name == "EDGEBUF_ERR_INVALID_RECORD" and e.message
        for bad in (b"", "1 2", b"\xff", float("nan"), object(), {"k": {1, 2}}):
            with pytest.raises(edgebuf.InvalidRecord):
                buf.log(bad)
        buf.log(" [1, 2.50, {\"k\": null}] \n")
        buf.log(bytearray(b"{}"))
        buf.log(None)  # JSON null
        assert buf.status().logged_total == 3


def test_invalid_config(keys):
    with pytest.raises(edgebuf.InvalidConfig) as ei:
        edgebuf.Buffer(no_such_key=1, **keys)
    assert "no.such_key" in ei.value.message
    with pytest.raises(edgebuf.InvalidConfig):
        edgebuf.Buffer(config={"batch.max_bytes": "soon"}, **keys)
    k = dict(keys)
    del k["endpoint"]
    with pytest.raises(edgebuf.InvalidConfig):
        edgebuf.Buffer(**k)
    with pytest.raises(TypeError):
        edgebuf.Buffer(config={"commit.interval_ms": "5"}, **keys)
    with pytest.raises(edgebuf.InvalidConfig):
        edgebuf.Buffer(config={"http.header.X-Api-Key": "a\0b"}, **keys)


def test_keyword_and_dict_keys(keys, receiver):
    # dead_letter_max_records and capacity_when_full need the key table; headers need config.
    with edgebuf.Buffer(
        config={"http.header.X-Api-Key": "k-123"},
        dead_letter_max_records=10,
        capacity_when_full="reject",
        **keys,
    ) as buf:
        buf.log({"x": 1})
        buf.flush(10)
    assert receiver.headers and receiver.headers[0].get("x-api-key") == "k-123"


def test_from_env(keys, receiver, monkeypatch):
    k = dict(keys)
    del k["endpoint"]
    monkeypatch.setenv("EDGEBUF_ENDPOINT", receiver.url)
    with edgebuf.Buffer(from_env=True, **k) as buf:
        buf.log({"env": True})
        buf.flush(10)
    assert len(receiver.received()[0]) == 1
    monkeypatch.setenv("EDGEBUF_COMMIT_INTERVAL_MS", "soon")
    with pytest.raises(edgebuf.InvalidConfig):
        edgebuf.Buffer(from_env=True, **k)


def test_locked(keys):
    with edgebuf.Buffer(**keys):
        with pytest.raises(edgebuf.Locked) as ei:
            edgebuf.Buffer(**keys)
        assert ei.value.code == 8
    with edgebuf.Buffer(**keys):  # the lock is released by close
        pass


def test_events(keys, receiver):
    events = []
    box = {}
    seen_close = threading.Event()

    def on_event(ev):
        events.append(ev)
        buf = box.get("buf")
        if buf is not None and ev.kind == edgebuf.EventKind.DELIVERED and "close" not in box:
            box["status"] = buf.status()
            try:
                buf.close(0)
            except edgebuf.Error as e:
                box["close"] = e
            seen_close.set()

    buf = edgebuf.Buffer(on_event=on_event, **keys)
    box["buf"] = buf
    for i in range(10):
        buf.log({"i": i})
    buf.flush(10)
    assert seen_close.wait(10)
    assert buf.close(5) is True  # drains the event queue
    kinds = [e.kind for e in events]
    assert edgebuf.EventKind.ONLINE in kinds and edgebuf.EventKind.DELIVERED in kinds
    assert kinds.index(edgebuf.EventKind.ONLINE) < kinds.index(edgebuf.EventKind.DELIVERED)
    delivered = [e for e in events if e.kind == edgebuf.EventKind.DELIVERED]
    assert sum(e.count for e in delivered) == 10
    assert delivered[0].http_status == 200 and delivered[0].message
    assert isinstance(box["close"], edgebuf.InvalidArgument)
    assert isinstance(box["status"], edgebuf.Status)


def test_outage_503_then_200(keys, receiver):
    receiver.status = 503
    events = []
    with edgebuf.Buffer(on_event=events.append, **keys) as buf:
        for i in range(20):
            buf.log({"i": i})
        with pytest.raises(edgebuf.Timeout):
            buf.flush(0.4)
        st = buf.status()
        assert st.failed_attempts_total >= 1 and st.last_http_status == 503
        assert st.pending_records == 20 and st.delivered_total == 0
        assert st.connectivity is edgebuf.Connectivity.OFFLINE

        receiver.status = 200
        buf.retry_now()
        buf.flush(10)
        st = buf.status()
        assert st.delivered_total == 20 and st.pending_records == 0
        assert st.connectivity is edgebuf.Connectivity.ONLINE and st.consecutive_failures == 0
    ids, _ = receiver.received()
    assert len(ids) == 20 and all(n == 1 for n in ids.values())
    kinds = [e.kind for e in events]
    assert edgebuf.EventKind.OFFLINE in kinds and edgebuf.EventKind.ONLINE in kinds


def test_close_timeout_keeps_records(keys, receiver):
    receiver.status = 503
    buf = edgebuf.Buffer(**keys)
    for i in range(5):
        buf.log(i)
    buf.sync(5)
    t0 = time.monotonic()
    assert buf.close(0.2) is False
    assert time.monotonic() - t0 < 3
    assert buf.close() is False  # idempotent: the first result
    with pytest.raises(edgebuf.Closed):
        buf.log(1)
    with pytest.raises(edgebuf.Closed):
        buf.status()

    receiver.status = 200
    with edgebuf.Buffer(**keys) as buf:
        assert buf.status().pending_at_open == 5
        buf.flush(10)
    assert len(receiver.received()[0]) == 5


def test_threads(keys, receiver):
    errors = []
    with edgebuf.Buffer(**keys) as buf:

        def worker(t):
            try:
                for i in range(250):
                    buf.log({"t": t, "i": i})
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        buf.flush(30)
    assert not errors
    assert len(receiver.received()[0]) == 1000


def test_close_while_other_threads_call(keys):
    buf = edgebuf.Buffer(**keys)
    stop = threading.Event()
    bad = []

    def worker():
        while not stop.is_set():
            try:
                buf.log({"x": 1})
                buf.status()
            except edgebuf.Closed:
                return
            except Exception as e:  # pragma: no cover - reported below
                bad.append(e)
                return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    buf.close(2)
    stop.set()
    for t in threads:
        t.join()
    assert not bad


def test_garbage_collection_closes(keys):
    buf = edgebuf.Buffer(on_event=lambda ev: None, **keys)
    buf.log({"forgotten": True})
    del buf
    gc.collect()
    with edgebuf.Buffer(**keys) as again:  # the finalizer released the lock
        assert again.status().pending_at_open <= 1  # written to disk at the latest by close(0)


def test_exceptions_hierarchy():
    classes = [
        edgebuf.InvalidArgument,
        edgebuf.InvalidConfig,
        edgebuf.InvalidRecord,
        edgebuf.Full,
        edgebuf.Timeout,
        edgebuf.Closed,
        edgebuf.StorageError,
        edgebuf.Locked,
        edgebuf.Corrupt,
        edgebuf.BufferTooSmall,
        edgebuf.InternalError,
    ]
    assert [c.code for c in classes] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99]
    for c in classes:
        assert issubclass(c, edgebuf.Error)
        e = edgebuf._error(c.code, "m")
        assert type(e) is c and e.name.startswith("EDGEBUF_ERR_")
    assert edgebuf._error(42, "m").name == "EDGEBUF_UNKNOWN"
