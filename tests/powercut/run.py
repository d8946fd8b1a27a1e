#!/usr/bin/env python3
"""The power-cut simulation (docs/reference.md, guarantees, power loss). Each round runs the logger
(tests/c/logger.c) under the shadow
shim (shadow.c), logging in durability=sync or async, kills it with SIGKILL at a random moment
(the cut), then builds the files a power cut would leave and opens them with edgebuf:

- a file's name exists only if a directory fsync made it durable (.dirlist);
- its content is what its last fsync covered (the shadow), and, in half the rounds, each
  512-byte sector written since may have reached the disk or not, in any order, and the
  bytes written past the shadow's end survive up to a random point (a torn tail);
- the -shm is never kept (it is rebuilt).

Then, per round: the file opens (logger check), its pending count equals the records it
holds, a record logged after the cut gets a seq above every seq in the file, and no record
is lost that docs/reference.md, guarantees keeps: in sync mode every acknowledged record, in async mode every record
logged more than commit.interval_ms + commit.sync_interval_ms (100 + 200 ms) before the cut.

usage: run.py LOGGER SHIM CLI ROUNDS SEED"""
import json, os, random, shutil, signal, subprocess, sys, tempfile, time

driver, shim, cli, rounds, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
WINDOW_NS = (100 + 200) * 1_000_000
SECTOR = 512
FILES = ("buf.db", "buf.db-wal")


def cut_image(durable, now, mix):
    """What a power cut leaves of a file whose last fsync covered `durable` and which now
    holds `now` in the page cache."""
    if not mix:
        return durable
    out = bytearray(durable)
    for i in range(0, min(len(durable), len(now)), SECTOR):
        if durable[i:i + SECTOR] != now[i:i + SECTOR] and rng.random() < 0.5:
            out[i:i + SECTOR] = now[i:i + SECTOR]
    if len(now) > len(durable):
        out += now[len(durable):len(durable) + rng.randrange(len(now) - len(durable) + 1)]
    return bytes(out)


def one_round(k, work):
    mode = "sync" if k % 2 else "async"
    mix = (k // 2) % 2 == 1
    live, shadow, after = (os.path.join(work, d) for d in ("live", "shadow", "after"))
    for d in (live, shadow, after):
        os.makedirs(d)
    env = dict(os.environ, LD_PRELOAD=shim, SHADOW_FILTER=live, SHADOW_DIR=shadow,
               EDGEBUF_COMMIT_INTERVAL_MS="100", EDGEBUF_COMMIT_SYNC_INTERVAL_MS="200",
               EDGEBUF_RETRY_INITIAL_MS="60000", EDGEBUF_RETRY_MAX_MS="60000")
    # The driver appends (O_APPEND) to its own descriptor; this process reads through another,
    # so that its reads never move the driver's write offset.
    acks_path = os.path.join(work, "acks")
    with open(acks_path, "ab") as out:
        p = subprocess.Popen([driver, "log", os.path.join(live, "buf.db"),
                              "http://127.0.0.1:9/ingest", mode, "0", "2"], stdout=out,
                             stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        with open(acks_path) as f:
            if f.readline() == "opened\n":
                break
        time.sleep(0.01)
    time.sleep(rng.uniform(0.05, 0.8))
    if p.poll() is not None:
        return [f"round {k}: the driver ended before the cut (status {p.returncode})"]
    p.send_signal(signal.SIGKILL)
    cut_ns = time.monotonic_ns()
    p.wait()
    acked = {}
    with open(acks_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                acked[int(parts[1])] = int(parts[2])

    durable_names = set()
    if os.path.exists(os.path.join(shadow, ".dirlist")):
        durable_names = set(open(os.path.join(shadow, ".dirlist")).read().split())
    for name in FILES:
        if name not in durable_names:
            continue
        sp = os.path.join(shadow, name)
        durable = open(sp, "rb").read() if os.path.exists(sp) else b""
        lp = os.path.join(live, name)
        now = open(lp, "rb").read() if os.path.exists(lp) else b""
        with open(os.path.join(after, name), "wb") as f:
            f.write(cut_image(durable, now, mix))

    path = os.path.join(after, "buf.db")
    chk = subprocess.run([driver, "check", path], capture_output=True, text=True, timeout=60)
    problems = []
    what = f"round {k} ({mode}, {'torn/reordered' if mix else 'dropped'} writes, {len(acked)} acked)"
    if chk.returncode != 0:
        return [f"{what}: the file did not open or close: {chk.stdout.strip()} {chk.stderr.strip()}"]
    pending_at_open = int(chk.stdout.split("pending_at_open ")[1].split()[0])
    exp = subprocess.run([cli, "export", path], capture_output=True, text=True, timeout=60)
    if exp.returncode != 0:
        return [f"{what}: export failed: {exp.stderr.strip()}"]
    held = [json.loads(l) for l in exp.stdout.splitlines()]
    marker = [e for e in held if e["data"]["n"] == -1]
    rest = [e for e in held if e["data"]["n"] != -1]
    ns = {e["data"]["n"] for e in rest}
    if len(marker) != 1:
        problems.append(f"{what}: {len(marker)} records logged after the cut")
    elif rest and marker[0]["seq"] <= max(e["seq"] for e in rest):
        problems.append(f"{what}: the record logged after the cut reused seq {marker[0]['seq']}")
    if len({e["seq"] for e in held}) != len(held):
        problems.append(f"{what}: a seq appears twice")
    if pending_at_open != len(rest):
        problems.append(f"{what}: status said {pending_at_open} pending at open, the file holds {len(rest)}")
    must = [n for n, t in acked.items() if mode == "sync" or t < cut_ns - WINDOW_NS]
    lost = [n for n in must if n not in ns]
    if lost:
        problems.append(f"{what}: {len(lost)} of {len(must)} records that must survive were lost, e.g. n={sorted(lost)[:5]}")
    latest_lost = max((cut_ns - t for n, t in acked.items() if n not in ns), default=0)
    return problems, len(acked), len(must), latest_lost, mode


def main():
    problems, acked_total, checked, worst = [], 0, 0, {"sync": 0, "async": 0}
    start = time.monotonic()
    for k in range(rounds):
        work = tempfile.mkdtemp(prefix="edgebuf-powercut-")
        try:
            r = one_round(k, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if isinstance(r, list):
            problems += r
            continue
        p, a, m, lost_age, mode = r
        problems += p
        acked_total += a
        checked += m
        # The youngest record lost: how long before the cut it was logged (0 = none lost).
        worst[mode] = max(worst[mode], lost_age if lost_age else 0)
        if time.monotonic() - start > 400:
            problems.append(f"stopped after {k + 1} rounds: over 400 s")
            break
    for p in problems[:10]:
        print("  " + p, file=sys.stderr)
    print(f"power cuts: {rounds} rounds (seed {seed}), {acked_total} records acknowledged, {checked} "
          f"of them checked as kept; the oldest lost record was logged "
          f"{worst['async'] / 1e6:.0f} ms before its cut in async mode (allowed: {WINDOW_NS // 1_000_000}), "
          f"{worst['sync'] / 1e6:.0f} ms in sync mode (allowed: none); {time.monotonic() - start:.0f} s")
    if problems:
        print(f"FAIL: {len(problems)} problems", file=sys.stderr)
        sys.exit(1)


main()
