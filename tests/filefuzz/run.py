#!/usr/bin/env python3
"""Fuzzing of file input (docs/reference.md, guarantees, damage): a valid buffer file with a -wal is damaged at random
(bytes flipped, zeroed, or the file cut short) and opened by tests/c/logger.c
(logger check: open, log one record, close) in a child process, CASES times.
Each case must:
- never crash (no signal, no exit other than 0 or 1);
- take at most 5 s;
- touch no other file (a file of the user's beside it stays as it was, and nothing appears
  but the buffer's own siblings and a quarantined set);
- end in OK (the file opened, perhaps after a quarantine, which must then have moved the set
  aside as it was) or CORRUPT with the file left as it was.
Seeds of failures are printed; FILEFUZZ_SEED replays one.

usage: run.py LOGGER CASES SEED"""
import hashlib, os, random, shutil, sqlite3, subprocess, sys, tempfile, time

driver, cases, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
OURS = {"buf.db", "buf.db-wal", "buf.db-shm", "buf.db.lock"}


def digest(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.exists(p) else None


def make_source(dir):
    """A buffer with records in the file itself (checkpointed at a close) and more committed
    in its -wal (a copy taken while it is open). Their wall clock counts as not set yet
    (clock.valid_after_unix_ms far ahead), so the clock table holds rows to damage too."""
    env = dict(os.environ, EDGEBUF_CLOCK_VALID_AFTER_UNIX_MS="9000000000000")
    live = os.path.join(dir, "live")
    os.makedirs(live)
    db = os.path.join(live, "buf.db")
    for _ in range(2):
        p = subprocess.Popen([driver, "log", db, "http://127.0.0.1:9/ingest", "sync", "0", "2"],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             env=env)
        time.sleep(0.4)
        p.kill()
        p.wait()
        subprocess.run([driver, "check", db], check=True, capture_output=True, timeout=60)
    p = subprocess.Popen([driver, "log", db, "http://127.0.0.1:9/ingest", "sync", "0", "2"],
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL,
                         env=env)
    time.sleep(0.4)
    src = os.path.join(dir, "src")
    os.makedirs(src)
    for n in ("buf.db", "buf.db-wal"):
        shutil.copy(os.path.join(live, n), os.path.join(src, n))
    p.kill()
    p.wait()
    sizes = {n: os.path.getsize(os.path.join(src, n)) for n in ("buf.db", "buf.db-wal")}
    if min(sizes.values()) < 4096:
        sys.exit(f"the source buffer is too small to damage meaningfully: {sizes}")
    probe = os.path.join(dir, "probe")
    shutil.copytree(src, probe)
    with sqlite3.connect(os.path.join(probe, "buf.db")) as c:
        clock_rows = c.execute("SELECT count(*) FROM clock").fetchone()[0]
    if clock_rows == 0:
        sys.exit("the source buffer has no rows in its clock table")
    print(f"file fuzz: source buffer {sizes}, {clock_rows} records with a boot clock")
    return src


def damage(rng, data):
    data = bytearray(data)
    kind = rng.choice(["flip", "zero", "cut", "flip"])
    if not data:
        return bytes(data), "empty"
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "zero":
        i = rng.randrange(len(data))
        data[i:i + rng.randint(1, 4096)] = bytes(min(len(data) - i, rng.randint(1, 4096)))
    else:
        del data[rng.randrange(len(data) + 1):]
    return bytes(data), kind


def one(k, src, rng):
    work = tempfile.mkdtemp(prefix="edgebuf-filefuzz-")
    try:
        for n in ("buf.db", "buf.db-wal"):
            shutil.copy(os.path.join(src, n), os.path.join(work, n))
        target = rng.choice(["buf.db", "buf.db-wal", "buf.db", "both"])
        what = []
        for n in (["buf.db", "buf.db-wal"] if target == "both" else [target]):
            p = os.path.join(work, n)
            data, how = damage(rng, open(p, "rb").read())
            open(p, "wb").write(data)
            what.append(f"{n} {how}")
        users = os.path.join(work, "notes.txt")
        open(users, "w").write("the user's\n")
        before = {n: digest(os.path.join(work, n)) for n in ("buf.db", "buf.db-wal")}
        t0 = time.monotonic()
        try:
            r = subprocess.run([driver, "check", os.path.join(work, "buf.db")],
                               capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            return f"case {k} ({', '.join(what)}): took more than 5 s"
        took = time.monotonic() - t0
        desc = f"case {k} ({', '.join(what)})"
        if r.returncode not in (0, 1):
            return f"{desc}: exit status {r.returncode} (a crash?) {r.stderr.strip()[:200]}"
        if open(users).read() != "the user's\n":
            return f"{desc}: the user's file changed"
        names = set(os.listdir(work)) - {"notes.txt"}
        quarantined = sorted(n for n in names if n.startswith("buf.db.corrupt-"))
        strays = names - OURS - set(quarantined)
        if strays:
            return f"{desc}: unexpected files {sorted(strays)}"
        if r.returncode == 0:
            if quarantined:
                base = [n for n in quarantined if not n.endswith(("-wal", "-shm"))]
                moved_wal = [n for n in quarantined if n.endswith("-wal")]
                # A quarantine moves the set as it was found (the -wal alone when only it is
                # stray).
                for n in base:
                    if digest(os.path.join(work, n)) != before["buf.db"]:
                        return f"{desc}: the quarantined file is not the file as found"
                for n in moved_wal:
                    if digest(os.path.join(work, n)) != before["buf.db-wal"]:
                        return f"{desc}: the quarantined -wal is not the -wal as found"
                return ("quarantined", took)
            return ("ok", took)
        if "EDGEBUF_ERR_CORRUPT" not in r.stdout:
            return f"{desc}: open failed with something else than CORRUPT: {r.stdout.strip()[:200]}"
        after = {n: digest(os.path.join(work, n)) for n in ("buf.db", "buf.db-wal")}
        if after != before or quarantined:
            return f"{desc}: CORRUPT but the files were changed or moved"
        return ("corrupt", took)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="edgebuf-filefuzz-src-")
    try:
        src = make_source(tmp)
        counts, problems, slowest = {}, [], 0.0
        start = time.monotonic()
        for k in range(cases):
            r = one(k, src, rng)
            if isinstance(r, str):
                problems.append(r)
            else:
                counts[r[0]] = counts.get(r[0], 0) + 1
                slowest = max(slowest, r[1])
            if time.monotonic() - start > 300:
                problems.append(f"stopped after {k + 1} cases: over 300 s")
                break
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for p in problems[:10]:
        print("  " + p, file=sys.stderr)
    print(f"file fuzz: {cases} damaged copies (seed {seed}): {counts.get('ok', 0)} opened, "
          f"{counts.get('quarantined', 0)} quarantined, {counts.get('corrupt', 0)} CORRUPT and left "
          f"as found; slowest open {slowest:.2f} s; {time.monotonic() - start:.0f} s")
    if problems:
        print(f"FAIL: {len(problems)} problems (replay with FILEFUZZ_SEED={seed})", file=sys.stderr)
        sys.exit(1)


main()
