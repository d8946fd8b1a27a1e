#!/usr/bin/env python3
"""The checker of the OTLP interop test (tests/otlp/run.sh). Stdlib only.

    check.py gen N RECORDS
        Writes N JSON records, one a line, exactly as they are to be logged: objects, arrays,
        strings (escaped and raw UTF-8), booleans, null, integers at the int64 limits and past
        them, doubles, varied whitespace. Record i (1-based line number) has "i": i.
    check.py verify RECORDS SINK_DIR [--source S] [--resource K=V]... [--since-ms MS]
        Reads every OTLP/JSON ExportLogsServiceRequest that the collector forwarded to the sink
        (SINK_DIR/*.json) and checks them against RECORDS, logged in that order into a fresh
        buffer (so seq k is line k): every record arrives, once or more with the same id and
        body (at-least-once: duplicates are reported, not failed); each body equals the logged
        JSON under the OTLP AnyValue mapping; resource attributes service.name, edgebuf.source
        and the otlp.resource.* ones, and nothing else; scope name "edgebuf" with a version;
        attributes edgebuf.id ("<16 hex>-<seq>", one instance for the run) and edgebuf.seq (+
        edgebuf.clock if any); severityNumber 9; timeUnixNano == observedTimeUnixNano, whole
        milliseconds, within the run; seq ascending within a request.
    check.py negative RECORDS SINK_DIR [verify options]
        The checker's own test: verify must pass on SINK_DIR as it is, and fail on each of a set
        of changed copies (a body value changed, a double one ulp off, an int turned into a
        string, a record removed, a resource attribute changed, a record's id changed).
    check.py post RECORDS ENDPOINT --format json|proto [--compression gzip|zstd|none] [--batch B]
                  [--pace-ms MS] [--deadline-s S] [--source S] [--resource K=V]...
        A stand-in for the library, for testing the harness before the library speaks OTLP
        (zstd compresses with the zstd program):
        encodes RECORDS OTLP/HTTP logs requests (as docs/reference.md maps records) of B records, posts them in order,
        retries a failed request (refused connection, 5xx, 429) with a short backoff until the
        deadline, prints "post: N records in R requests, F failed attempts" and exits 0 when
        all were accepted.
"""

import argparse
import glob
import gzip
import json
import math
import os
import random
import re
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# ---------------------------------------------------------------- records


def gen_records(n):
    rnd = random.Random(20261205)
    words = ["cam-07", "caf\u00e9", "\u65e5\u672c\u8a9e", "emoji \U0001f600", 'quote " and \\ back',
             "tab\tnew\nline", "ctl \u0001\u001f", "", " ", "slash /", "<html>&amp;"]
    out = []
    for i in range(1, n + 1):
        k = i % 12
        if k == 0:
            rec = {"i": i, "label": rnd.choice(words), "score": rnd.random(), "ok": True}
        elif k == 1:
            rec = {"i": i, "boxes": [[rnd.randint(0, 640), rnd.randint(0, 480), 1.5, -2.25e-10]
                                     for _ in range(rnd.randint(0, 4))], "none": None}
        elif k == 2:
            rec = {"i": i, "max": INT64_MAX, "min": INT64_MIN, "past": INT64_MAX + 1,
                   "neg_past": INT64_MIN - 1, "big": 10**30}
        elif k == 3:
            rec = {"i": i, "nested": {"a": {"b": {"c": [1, "two", False, None, {"d": []}]}}},
                   "empty_obj": {}, "empty_arr": [], "empty_str": ""}
        elif k == 4:
            rec = {"i": i, "f": [0.1, 1e300, -1e-300, 5e-324, 123456789.125, 1.0, 2e0]}
        elif k == 5:
            rec = {"i": i, "text": " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 8)))}
        elif k == 6:
            rec = {"i": i, "flags": [True, False, None], "zero": 0, "neg": -17}
        elif k == 7:
            rec = {"i": i, "k" * 40: "long key", "unicode_key_\u00fc": 1}
        elif k == 8 and i % 600 == 8:
            rec = {"i": i, "blob": "x" * 20000}  # a large record, sent in a batch of its own size
        else:
            rec = {"i": i, "model": "yolo-n", "latency_ms": rnd.randint(1, 200),
                   "classes": {"person": rnd.random(), "car": rnd.random()}}
        style = i % 4
        if style == 0:
            line = json.dumps(rec, separators=(",", ":"))
        elif style == 1:
            line = json.dumps(rec, ensure_ascii=False)
        elif style == 2:
            line = json.dumps(rec, separators=(" , ", " : "), ensure_ascii=False)
        else:
            line = json.dumps(rec, indent=1).replace("\n", " ")  # spaces, no line breaks
        out.append(line)
    return out


def read_records(path):
    with open(path, "rb") as f:
        return [ln.decode("utf-8") for ln in f.read().split(b"\n") if ln]


# ---------------------------------------------------------------- the AnyValue mapping


def tag_json(v):
    """A logged JSON value as the tagged form the OTLP mapping must give."""
    if v is None:
        return ("null",)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        if INT64_MIN <= v <= INT64_MAX:
            return ("int", v)
        return ("double", float(v))
    if isinstance(v, float):
        return ("double", v)
    if isinstance(v, str):
        return ("string", v)
    if isinstance(v, Pairs):  # an object, as a list of pairs (duplicate keys kept)
        return ("kvlist", tuple(sorted((k, tag_json(x)) for k, x in v)))
    if isinstance(v, list):
        return ("array", tuple(tag_json(x) for x in v))
    raise TypeError(type(v))


class Pairs(list):
    pass


def parse_logged(line):
    return json.loads(line, object_pairs_hook=Pairs)


class Bad(Exception):
    pass


def tag_any(av, where):
    """An OTLP/JSON AnyValue (as the collector writes it) in tagged form."""
    if not isinstance(av, dict):
        raise Bad("%s: AnyValue is not an object: %r" % (where, av))
    if len(av) == 0:
        return ("null",)
    if len(av) != 1:
        raise Bad("%s: AnyValue with several fields: %r" % (where, sorted(av)))
    (k, v), = av.items()
    if k == "stringValue" and isinstance(v, str):
        return ("string", v)
    if k == "boolValue" and isinstance(v, bool):
        return ("bool", v)
    if k == "intValue" and (isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v)
                            or isinstance(v, int) and not isinstance(v, bool)):
        return ("int", int(v))
    if k == "doubleValue" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return ("double", float(v))
    if k == "arrayValue" and isinstance(v, dict):
        return ("array", tuple(tag_any(x, where + "[]") for x in v.get("values", [])))
    if k == "kvlistValue" and isinstance(v, dict):
        pairs = []
        for kv in v.get("values", []):
            if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
                raise Bad("%s: bad KeyValue %r" % (where, kv))
            pairs.append((kv["key"], tag_any(kv.get("value", {}), where + "." + kv["key"])))
        return ("kvlist", tuple(sorted(pairs)))
    raise Bad("%s: unexpected AnyValue %s=%r" % (where, k, v))


def attrs(lst, where):
    out = {}
    for kv in lst or []:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise Bad("%s: bad attribute %r" % (where, kv))
        if kv["key"] in out:
            raise Bad("%s: attribute %s twice" % (where, kv["key"]))
        out[kv["key"]] = tag_any(kv.get("value", {}), where + " " + kv["key"])
    return out


# ---------------------------------------------------------------- verify


def first_diff(want, got, path):
    """Where two tagged values first differ, and how, for the report."""
    if want[0] != got[0]:
        return "%s: logged %s %r, received %s %r" % (path, want[0], want[1:], got[0], got[1:])
    if want[0] in ("array", "kvlist"):
        a, b = want[1], got[1]
        if len(a) != len(b):
            return "%s: %d elements logged, %d received" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            if want[0] == "kvlist":
                if x[0] != y[0]:
                    return "%s: key %r logged, %r received" % (path, x[0], y[0])
                if x[1] != y[1]:
                    return first_diff(x[1], y[1], path + "." + x[0])
            elif x != y:
                return first_diff(x, y, "%s[%d]" % (path, i))
    if want[0] == "double" and isinstance(got[1], float):
        return "%s: logged double %r (%s), received %r (%s)" % (
            path, want[1], want[1].hex(), got[1], got[1].hex())
    return "%s: logged %r, received %r" % (path, want[1:], got[1:])


def verify(records, bodies, source, resource, since_ms, out=sys.stdout):
    """bodies: list of (name, bytes). Returns a list of errors (empty = pass)."""
    errors = []

    def err(msg):
        if len(errors) < 30:
            errors.append(msg)
        elif len(errors) == 30:
            errors.append("... (more errors left out)")

    expected = [tag_json(parse_logged(r)) for r in records]
    want_res = {"service.name": ("string", resource.get("service.name", "edgebuf")),
                "edgebuf.source": ("string", source)}
    for k, v in resource.items():
        want_res[k] = ("string", v)
    now_ns = time.time_ns() + 60 * 10**9
    since_ns = (since_ms - 60_000) * 10**6 if since_ms else 0
    seen = {}  # seq -> id
    dups = 0
    dup_ids = []
    instances = set()
    n_records = 0
    for name, body in bodies:
        try:
            req = json.loads(body)
        except ValueError as e:
            err("%s: not JSON: %s" % (name, e))
            continue
        rls = req.get("resourceLogs") if isinstance(req, dict) else None
        if not isinstance(rls, list) or len(rls) != 1:
            err("%s: expected one resourceLogs, got %r" % (name, None if rls is None else len(rls)))
            if not isinstance(rls, list):
                continue
        for rl in rls:
            try:
                got = attrs(rl.get("resource", {}).get("attributes"), name + " resource")
            except Bad as e:
                err(str(e))
                continue
            if got != want_res:
                err("%s: resource attributes %r, want %r" % (name, got, want_res))
            sls = rl.get("scopeLogs") or []
            if len(sls) != 1:
                err("%s: expected one scopeLogs, got %d" % (name, len(sls)))
            for sl in sls:
                scope = sl.get("scope") or {}
                if scope.get("name") != "edgebuf":
                    err("%s: scope name %r" % (name, scope.get("name")))
                if not isinstance(scope.get("version"), str) or not scope.get("version"):
                    err("%s: scope version missing: %r" % (name, scope))
                prev_seq = 0
                for lr in sl.get("logRecords") or []:
                    n_records += 1
                    try:
                        a = attrs(lr.get("attributes"), name + " logRecord")
                        body_t = tag_any(lr.get("body", {}), name + " body")
                    except Bad as e:
                        err(str(e))
                        continue
                    extra = set(a) - {"edgebuf.id", "edgebuf.seq", "edgebuf.clock"}
                    if extra:
                        err("%s: unexpected attributes %s" % (name, sorted(extra)))
                    sq, rid = a.get("edgebuf.seq"), a.get("edgebuf.id")
                    if not sq or sq[0] != "int" or not rid or rid[0] != "string":
                        err("%s: edgebuf.seq %r / edgebuf.id %r" % (name, sq, rid))
                        continue
                    seq, rid = sq[1], rid[1]
                    m = re.fullmatch(r"([0-9a-f]{16})-([0-9]+)", rid)
                    if not m or int(m.group(2)) != seq:
                        err("%s: edgebuf.id %r does not match seq %d" % (name, rid, seq))
                        continue
                    instances.add(m.group(1))
                    if seq <= prev_seq:
                        err("%s: seq %d after %d in one request" % (name, seq, prev_seq))
                    prev_seq = seq
                    if not 1 <= seq <= len(records):
                        err("%s: seq %d outside 1..%d" % (name, seq, len(records)))
                        continue
                    if body_t != expected[seq - 1]:
                        err("%s: seq %d body differs at %s\n  logged   %s\n  received %s"
                            % (name, seq, first_diff(expected[seq - 1], body_t, "body"),
                               records[seq - 1][:300], json.dumps(lr.get("body"))[:300]))
                    if lr.get("severityNumber") not in (9, "SEVERITY_NUMBER_INFO"):
                        err("%s: seq %d severityNumber %r" % (name, seq, lr.get("severityNumber")))
                    t, o = lr.get("timeUnixNano"), lr.get("observedTimeUnixNano")
                    try:
                        t_i, o_i = int(t), int(o)
                    except (TypeError, ValueError):
                        err("%s: seq %d timestamps %r %r" % (name, seq, t, o))
                    else:
                        if t_i != o_i or t_i % 10**6 or not since_ns <= t_i <= now_ns:
                            err("%s: seq %d timeUnixNano %r observedTimeUnixNano %r"
                                % (name, seq, t, o))
                    if seq in seen:
                        dups += 1
                        if len(dup_ids) < 10:
                            dup_ids.append(rid)
                        if seen[seq] != rid:
                            err("%s: seq %d arrived with ids %s and %s" % (name, seq, seen[seq], rid))
                    else:
                        seen[seq] = rid
    if len(instances) > 1:
        err("several instances in the ids: %s" % sorted(instances))
    missing = [s for s in range(1, len(records) + 1) if s not in seen]
    if missing:
        err("%d of %d records never arrived (seq %s%s)"
            % (len(missing), len(records), missing[:20], " ..." if len(missing) > 20 else ""))
    print("verify: %d requests, %d log records, %d distinct of %d logged, %d duplicates%s"
          % (len(bodies), n_records, len(seen), len(records), dups,
             (" (ids " + ", ".join(dup_ids) + ")") if dups else ""), file=out)
    return errors


def load_bodies(sink_dir):
    out = []
    for p in sorted(glob.glob(os.path.join(sink_dir, "*.json"))):
        with open(p, "rb") as f:
            out.append((os.path.basename(p), f.read()))
    return out


def kv_args(lst):
    res = {}
    for s in lst or []:
        k, sep, v = s.partition("=")
        if not sep:
            raise SystemExit("--resource wants K=V, got %r" % s)
        res[k] = v
    return res


def cmd_verify(a):
    records = read_records(a.records)
    errors = verify(records, load_bodies(a.sink_dir), a.source, kv_args(a.resource), a.since_ms)
    for e in errors:
        print("verify: FAIL: " + e)
    print("verify: %s" % ("FAILED" if errors else "OK"))
    return 1 if errors else 0


def cmd_negative(a):
    records = read_records(a.records)
    bodies = load_bodies(a.sink_dir)
    res = kv_args(a.resource)
    null = open(os.devnull, "w")
    if verify(records, bodies, a.source, res, a.since_ms, out=null):
        print("negative: the unchanged sink output does not pass; nothing to compare")
        return 1

    def first_record(reqs):
        for i, (name, b) in enumerate(reqs):
            r = json.loads(b)
            for rl in r.get("resourceLogs", []):
                for sl in rl.get("scopeLogs", []):
                    if sl.get("logRecords"):
                        return i, r, sl["logRecords"]
        raise SystemExit("negative: no log record in the sink output")

    def changed(fn):
        reqs = list(bodies)
        i, r, lrs = first_record(reqs)
        fn(r, lrs)
        reqs[i] = (reqs[i][0], json.dumps(r).encode())
        return reqs

    def set_first_int_to_string(r, lrs):
        def walk(av):
            if "intValue" in av:
                av["stringValue"] = str(av.pop("intValue"))
                return True
            for kv in av.get("kvlistValue", {}).get("values", []):
                if walk(kv.get("value", {})):
                    return True
            for x in av.get("arrayValue", {}).get("values", []):
                if walk(x):
                    return True
            return False
        if not walk(lrs[0]["body"]):
            raise SystemExit("negative: the first body has no integer")

    def change_value(r, lrs):
        kvs = lrs[0]["body"]["kvlistValue"]["values"]
        kvs[-1]["value"] = {"stringValue": "changed"}

    def change_resource(r, lrs):
        for kv in r["resourceLogs"][0]["resource"]["attributes"]:
            if kv["key"] == "service.name":
                kv["value"] = {"stringValue": "other"}

    def change_id(r, lrs):
        for kv in lrs[0]["attributes"]:
            if kv["key"] == "edgebuf.id":
                kv["value"]["stringValue"] = "0123456789abcdef-" + kv["value"]["stringValue"].split("-")[1]

    def double_one_ulp_off(r, lrs):
        def walk(av):
            if isinstance(av.get("doubleValue"), float):
                av["doubleValue"] = math.nextafter(av["doubleValue"], math.inf)
                return True
            for kv in av.get("kvlistValue", {}).get("values", []):
                if walk(kv.get("value", {})):
                    return True
            return any(walk(x) for x in av.get("arrayValue", {}).get("values", []))
        if not any(walk(lr.get("body", {})) for lr in lrs):
            raise SystemExit("negative: no double in the first request")

    cases = [
        ("a body value changed", changed(change_value)),
        ("a double one ulp off", changed(double_one_ulp_off)),
        ("an integer turned into a string", changed(set_first_int_to_string)),
        ("a record removed", changed(lambda r, lrs: lrs.pop(0))),
        ("service.name changed", changed(change_resource)),
        ("an id changed", changed(change_id)),
    ]
    failed = 0
    for what, reqs in cases:
        errs = verify(records, reqs, a.source, res, a.since_ms, out=null)
        if errs:
            print("negative: %s: rejected (%s)" % (what, errs[0].splitlines()[0][:150]))
        else:
            print("negative: %s: ACCEPTED, the checker is blind to it" % what)
            failed += 1
    print("negative: %d passed, %d failed" % (len(cases) - failed, failed))
    return 1 if failed else 0


# ---------------------------------------------------------------- the stand-in client


def pb_varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_len(field, payload):
    return pb_varint(field << 3 | 2) + pb_varint(len(payload)) + payload


def pb_str(field, s):
    return pb_len(field, s.encode("utf-8"))


def pb_any(t):
    kind = t[0]
    if kind == "null":
        return b""
    if kind == "string":
        return pb_str(1, t[1])
    if kind == "bool":
        return pb_varint(2 << 3) + pb_varint(1 if t[1] else 0)
    if kind == "int":
        return pb_varint(3 << 3) + pb_varint(t[1])
    if kind == "double":
        return pb_varint(4 << 3 | 1) + struct.pack("<d", t[1])
    if kind == "array":
        return pb_len(5, b"".join(pb_len(1, pb_any(x)) for x in t[1]))
    return pb_len(6, b"".join(pb_len(1, pb_str(1, k) + pb_len(2, pb_any(v))) for k, v in t[1]))


def json_any(t):
    kind = t[0]
    if kind == "null":
        return {}
    if kind == "string":
        return {"stringValue": t[1]}
    if kind == "bool":
        return {"boolValue": t[1]}
    if kind == "int":
        return {"intValue": str(t[1])}
    if kind == "double":
        return {"doubleValue": t[1]}
    if kind == "array":
        return {"arrayValue": {"values": [json_any(x) for x in t[1]]}}
    return {"kvlistValue": {"values": [{"key": k, "value": json_any(v)} for k, v in t[1]]}}


def tag_json_ordered(v):
    """Like tag_json, but keeps the key order, as an encoder would."""
    if isinstance(v, Pairs):
        return ("kvlist", tuple((k, tag_json_ordered(x)) for k, x in v))
    if isinstance(v, list):
        return ("array", tuple(tag_json_ordered(x) for x in v))
    return tag_json(v)


def encode(fmt, source, resource, instance, batch):
    """batch: list of (seq, line, ts_ms)."""
    res = [("service.name", resource.get("service.name", "edgebuf")), ("edgebuf.source", source)]
    res += [(k, v) for k, v in resource.items() if k != "service.name"]
    if fmt == "json":
        lrs = []
        for seq, line, ts in batch:
            ns = str(ts * 10**6)
            lrs.append({"timeUnixNano": ns, "observedTimeUnixNano": ns, "severityNumber": 9,
                        "body": json_any(tag_json_ordered(parse_logged(line))),
                        "attributes": [
                            {"key": "edgebuf.id", "value": {"stringValue": "%s-%d" % (instance, seq)}},
                            {"key": "edgebuf.seq", "value": {"intValue": str(seq)}}]})
        req = {"resourceLogs": [{
            "resource": {"attributes": [{"key": k, "value": {"stringValue": v}} for k, v in res]},
            "scopeLogs": [{"scope": {"name": "edgebuf", "version": "harness"}, "logRecords": lrs}]}]}
        return json.dumps(req).encode(), "application/json"
    lrs = b""
    for seq, line, ts in batch:
        ns = struct.pack("<Q", ts * 10**6)
        lr = (pb_varint(1 << 3 | 1) + ns + pb_varint(2 << 3) + pb_varint(9)
              + pb_len(5, pb_any(tag_json_ordered(parse_logged(line))))
              + pb_len(6, pb_str(1, "edgebuf.id") + pb_len(2, pb_str(1, "%s-%d" % (instance, seq))))
              + pb_len(6, pb_str(1, "edgebuf.seq") + pb_len(2, pb_varint(3 << 3) + pb_varint(seq)))
              + pb_varint(11 << 3 | 1) + ns)
        lrs += pb_len(2, lr)
    resource_pb = b"".join(pb_len(1, pb_str(1, k) + pb_len(2, pb_str(1, v))) for k, v in res)
    scope = pb_str(1, "edgebuf") + pb_str(2, "harness")
    rl = pb_len(1, resource_pb) + pb_len(2, pb_len(1, scope) + lrs)
    return pb_len(1, rl), "application/x-protobuf"


def cmd_post(a):
    records = read_records(a.records)
    res = kv_args(a.resource)
    instance = "%016x" % random.getrandbits(64)
    deadline = time.monotonic() + a.deadline_s
    requests = failed = 0
    seq = 1
    while seq <= len(records):
        batch = []
        while seq <= len(records) and len(batch) < a.batch:
            batch.append((seq, records[seq - 1], time.time_ns() // 10**6))
            seq += 1
        body, ctype = encode(a.format, a.source, res, instance, batch)
        headers = {"Content-Type": ctype}
        if a.compression == "gzip":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        elif a.compression == "zstd":  # no zstd in this Python's stdlib: the zstd tool
            body = subprocess.run(["zstd", "-q", "-c"], input=body, stdout=subprocess.PIPE,
                                  check=True).stdout
            headers["Content-Encoding"] = "zstd"
        backoff = 0.05
        while True:
            requests += 1
            try:
                req = urllib.request.Request(a.endpoint, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=10) as resp:
                    resp.read()
                break
            except urllib.error.HTTPError as e:
                e.read()
                if e.code not in (408, 429) and e.code < 500:
                    print("post: HTTP %d for seq %d..%d: not retryable" % (e.code, batch[0][0], batch[-1][0]))
                    return 1
            except (urllib.error.URLError, OSError):
                pass
            failed += 1
            if time.monotonic() > deadline:
                print("post: deadline passed with seq %d..%d unsent" % (batch[0][0], len(records)))
                return 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
        if a.pace_ms:
            time.sleep(a.pace_ms / 1000)
    print("post: %d records in %d requests, %d failed attempts" % (len(records), requests, failed))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("n", type=int)
    g.add_argument("records")
    for name in ("verify", "negative"):
        v = sub.add_parser(name)
        v.add_argument("records")
        v.add_argument("sink_dir")
        v.add_argument("--source", default="otlp-test")
        v.add_argument("--resource", action="append")
        v.add_argument("--since-ms", type=int, default=0)
    s = sub.add_parser("post")
    s.add_argument("records")
    s.add_argument("endpoint")
    s.add_argument("--format", choices=["json", "proto"], required=True)
    s.add_argument("--compression", choices=["gzip", "zstd", "none"], default="gzip")
    s.add_argument("--batch", type=int, default=50)
    s.add_argument("--pace-ms", type=int, default=0)
    s.add_argument("--deadline-s", type=float, default=60)
    s.add_argument("--source", default="otlp-test")
    s.add_argument("--resource", action="append")
    a = p.parse_args()
    if a.cmd == "gen":
        with open(a.records, "wb") as f:
            for line in gen_records(a.n):
                f.write(line.encode("utf-8") + b"\n")
        return 0
    return {"verify": cmd_verify, "negative": cmd_negative, "post": cmd_post}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
