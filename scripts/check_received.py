#!/usr/bin/env python3
"""Checks an ONNX example's outage run: every prediction the loop logged (LOGGED: one JSON line
per record, the bytes logged, each with "n" from 1 to COUNT and 4 "scores") arrived exactly once
by envelope id at the reference receiver (RECEIVED: `edgebuf receive`'s NDJSON output; only
envelopes of source SOURCE count), under one buffer instance, with seq = n, the scores logged and
the data bytes verbatim (edgebuf never re-encodes them). NAME prefixes the messages. Exits 1 on
any problem, listing the first ones.

Used by examples-go/run.sh and examples-python/run.sh."""
import json, re, sys

if len(sys.argv) != 6:
    sys.exit("usage: check_received.py LOGGED RECEIVED COUNT SOURCE NAME")
logged_path, received_path = sys.argv[1], sys.argv[2]
count, source, name = int(sys.argv[3]), sys.argv[4], sys.argv[5]
problems = []
def problem(msg):
    problems.append(msg)
    if len(problems) <= 10:
        print("  " + msg, file=sys.stderr)

logged = {}  # n -> (raw line, parsed)
with open(logged_path) as f:
    for line in f:
        raw = line.rstrip("\n")
        rec = json.loads(raw)
        if rec["n"] in logged:
            problem("n=%d logged twice" % rec["n"])
        logged[rec["n"]] = (raw, rec)
if sorted(logged) != list(range(1, count + 1)):
    problem("the side file has %d records, not n=1..%d" % (len(logged), count))

data_re = re.compile(r',"data":(.*)\}$')
ids, by_n, instances = set(), {}, set()
with open(received_path) as f:
    for line in f:
        line = line.rstrip("\n")
        env = json.loads(line)
        if env.get("source") != source:
            continue
        eid, seq, data = env["id"], env["seq"], env["data"]
        if eid in ids:
            problem("id %s received twice" % eid)
        ids.add(eid)
        inst, _, s = eid.rpartition("-")
        instances.add(inst)
        if s != str(seq):
            problem("id %s does not end with its seq %d" % (eid, seq))
        n = data.get("n")
        if n in by_n:
            problem("n=%s arrived under two ids: %s and %s" % (n, by_n[n][0], eid))
        m = data_re.search(line)
        by_n[n] = (eid, seq, data, m.group(1) if m else None)

missing = sorted(set(logged) - set(by_n))
extra = sorted(set(by_n) - set(logged))
if missing:
    problem("%d logged predictions never arrived (n=%s...)" % (len(missing), missing[:5]))
if extra:
    problem("%d arrived that were not logged (n=%s...)" % (len(extra), extra[:5]))
if len(instances) != 1:
    problem("expected one buffer instance, got %d" % len(instances))
bad = {"scores": 0, "bytes": 0, "seq": 0}
for n, (eid, seq, data, raw) in by_n.items():
    if n not in logged:
        continue
    lraw, rec = logged[n]
    scores = data.get("scores")
    if scores != rec["scores"] or len(scores) != 4 or not all(isinstance(v, float) for v in scores):
        bad["scores"] += 1
        if bad["scores"] <= 3:
            problem("n=%d (%s): scores %s, logged %s" % (n, eid, scores, rec["scores"]))
    elif raw != lraw:
        bad["bytes"] += 1
        if bad["bytes"] <= 3:
            problem("n=%d (%s): data %r differs from the logged bytes %r" % (n, eid, raw, lraw))
    if seq != n:  # a fresh buffer: seq counts from 1 in log order
        bad["seq"] += 1
        if bad["seq"] <= 3:
            problem("n=%d arrived with seq %d" % (n, seq))
if problems:
    print("%s: %d problems in the received records" % (name, len(problems)), file=sys.stderr)
    sys.exit(1)
print("%s: %d predictions received exactly once by id (%d unique ids), scores and "
      "record bytes equal to what was logged" % (name, len(by_n), len(ids)))
