"""kcat scenario of the interop matrix (see ../README.md).

kcat is librdkafka's command-line producer/consumer. It has no admin API, so:
- create_topic is a gap: the topic is auto-created by Petrel (auto.create.topics, default
  on) with its default partition count (--default-partitions, default 1) on the first
  producer's Metadata request; describe_topic therefore expects 1 partition, not 3;
- describe_group and delete_topic are gaps (no group listing/describe/offset fetch, no delete);
  the committed offsets are still checked, indirectly, by resume_from_commit.
kcat -P sets headers with -H for every message of one run, so each record is sent by its own
`kcat -P` process (about 10 ms each), one codec after the other, in increasing i.
kcat -G (balanced consumer) has no explicit commit: it keeps librdkafka's default
enable.auto.commit=true and commits the consumed offsets when it closes (on SIGTERM here).
`-o beginning` is not used with -G because kcat applies it to every assigned partition,
overriding the committed offsets; auto.offset.reset=earliest is set with -X instead.

Prints one JSON line per step on stdout; everything else goes to stderr.
"""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

BOOTSTRAP = os.environ["PETREL_BOOTSTRAP"]
CLIENT = os.environ.get("INTEROP_CLIENT", "kcat")
TOPIC = f"interop-{CLIENT}"
GROUP = f"interop-{CLIENT}-group"
AUTO_CREATED_PARTITIONS = 1  # Petrel's --default-partitions default
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 300
RESUME = 50
TIMEOUT_S = 60
NO_ADMIN = "kcat has no admin API"

failures = 0


def log(msg):
    print(f"[{CLIENT}] {msg}", file=sys.stderr, flush=True)


def step(name, ok, detail=None, gap=None):
    global failures
    out = {"step": name, "ok": ok}
    if gap is not None:
        out["gap"] = gap
    if detail is not None:
        out["detail"] = str(detail)[:2000]
    if ok is False:
        failures += 1
    print(json.dumps(out), flush=True)


def record(codec, i):
    return f"{codec}-{i}", f"{codec}:{i}:" + "petrel" * (i % 40), [("codec", codec), ("i", str(i))]


def resume_record(i):
    return f"resume-{i}", f"resume:{i}", [("codec", "resume"), ("i", str(i))]


def summarize(items, n=10):
    items = sorted(items)
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def kcat_produce(codec, key, value, headers):
    """One `kcat -P` run for one record; returns None or an error string."""
    cmd = ["kcat", "-P", "-b", BOOTSTRAP, "-t", TOPIC, "-z", codec, "-K", "\t"]
    for k, v in headers:
        cmd += ["-H", f"{k}={v}"]
    try:
        p = subprocess.run(cmd, input=f"{key}\t{value}\n", capture_output=True, text=True,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"{key}: kcat -P timed out after {TIMEOUT_S}s"
    if p.returncode != 0 or "fail" in p.stderr.lower():
        return f"{key}: kcat -P exit {p.returncode}: {p.stderr.strip()[:300]}"
    return None


def produce(codec, records):
    """Returns (acked keys, errors)."""
    acked, errors = [], []
    for key, value, headers in records:
        err = kcat_produce(codec, key, value, headers)
        if err:
            errors.append(err)
            log(err)
        else:
            acked.append(key)
    return acked, errors


def parse_headers(text):
    if not text:
        return []
    return [tuple(kv.split("=", 1)) for kv in text.split(",")]


def consume(expected, extra_poll_s=0.0):
    """Runs a new `kcat -G` balanced consumer in GROUP and reads until every key of
    `expected` (key -> (value, headers)) arrived, then extra_poll_s more; stops it with
    SIGTERM (kcat then closes the consumer, which commits). Returns (problems, got)."""
    cmd = ["kcat", "-b", BOOTSTRAP, "-G", GROUP, "-X", "auto.offset.reset=earliest", "-u",
           "-f", r"%p\t%o\t%k\t%s\t%h\n", TOPIC]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    lines = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    got = {}
    dupes, wrong, unexpected, order, garbled = [], [], [], [], []
    last_i = {}  # (partition, codec) -> last i
    deadline = time.monotonic() + TIMEOUT_S
    extra_deadline = None
    problems = []
    ended = False
    while True:
        now = time.monotonic()
        if extra_deadline is None and set(got) >= set(expected):
            extra_deadline = now + extra_poll_s
        if extra_deadline is not None and now >= extra_deadline:
            break
        if now >= deadline:
            break
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            ended = True
            break
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 5:
            garbled.append(line.rstrip("\n"))
            continue
        partition, offset, key, value, headers = fields
        headers = parse_headers(headers)
        if key in got:
            dupes.append(key)
            continue
        got[key] = (int(partition), int(offset))
        if key not in expected:
            unexpected.append(key)
            continue
        want_value, want_headers = expected[key]
        if value != want_value or headers != want_headers:
            wrong.append(f"{key} (value {value!r}, headers {headers!r})")
        codec, i = want_headers[0][1], int(want_headers[1][1])
        prev = last_i.get((partition, codec))
        if prev is not None and i <= prev:
            order.append(f"{key} after {codec}-{prev} in partition {partition}")
        last_i[(partition, codec)] = i
    if ended:
        problems.append(f"kcat exited early with {proc.wait()}")
    else:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
            if code != 0:
                problems.append(f"kcat exited with {code} after SIGTERM")
        except subprocess.TimeoutExpired:
            proc.kill()
            problems.append("kcat did not exit within 30s of SIGTERM")
    missing = [k for k in expected if k not in got]
    if missing:
        problems.append(f"missing {len(missing)} records after {TIMEOUT_S}s: {summarize(missing)}")
    if dupes:
        problems.append(f"{len(dupes)} records arrived twice: {summarize(dupes)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected records: {summarize(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} records with wrong value/headers: {'; '.join(wrong[:5])}")
    if order:
        problems.append(f"out of order within a partition: {'; '.join(order[:5])}")
    if garbled:
        problems.append(f"{len(garbled)} unparseable lines: {garbled[:3]}")
    return problems, got


def metadata(topic=None):
    cmd = ["kcat", "-L", "-J", "-b", BOOTSTRAP] + (["-t", topic] if topic else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}: exit {p.returncode}: {p.stderr.strip()[:300]}")
    return json.loads(p.stdout)


def main():
    version = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    log(next((line for line in version.splitlines() if line.startswith("Version")), version))

    step("create_topic", None,
         gap=f"{NO_ADMIN}: the topic is auto-created by Petrel on the first produce "
             f"(Metadata with allow_auto_topic_creation) with its default "
             f"{AUTO_CREATED_PARTITIONS} partition, not 3")

    expected = {}
    for codec in CODECS:
        records = [record(codec, i) for i in range(PER_CODEC)]
        started = time.monotonic()
        acked, errors = produce(codec, records)
        acked_set = set(acked)
        for key, value, headers in records:
            if key in acked_set:
                expected[key] = (value, headers)
        secs = time.monotonic() - started
        if errors or len(acked_set) != PER_CODEC:
            step(f"produce_{codec}", False,
                 f"{len(acked_set)}/{PER_CODEC} acknowledged; errors: {'; '.join(errors[:5])}")
        else:
            note = ("" if codec == "none" else
                    " (librdkafka sends a one-record batch uncompressed when compressing would not "
                    "shrink it: the short values)")
            step(f"produce_{codec}", True,
                 f"{PER_CODEC} records, one `kcat -P -z {codec}` run each, all delivered in "
                 f"{secs:.1f}s{note}")

    consumed_ok = False
    if not expected:
        step("consume_group", False, "not run: nothing was produced")
    else:
        started = time.monotonic()
        problems, got = consume(expected)
        if problems:
            step("consume_group", False, "; ".join(problems))
        else:
            parts = sorted({p for p, _ in got.values()})
            step("consume_group", True,
                 f"kcat -G: {len(got)} records, exact keys/values/headers, in order, from partitions "
                 f"{parts} in {time.monotonic() - started:.1f}s; offsets committed on close "
                 f"(kcat has no explicit commit: auto-commit)")
            consumed_ok = True

    if not consumed_ok:
        step("resume_from_commit", False, "not run: consume_group failed")
    else:
        records = [resume_record(i) for i in range(RESUME)]
        acked, errors = produce("none", records)
        if errors or len(set(acked)) != RESUME:
            step("resume_from_commit", False,
                 f"producing: {len(set(acked))}/{RESUME} acknowledged; {'; '.join(errors[:5])}")
        else:
            want = {k: (v, h) for k, v, h in records}
            problems, got = consume(want, extra_poll_s=2.0)
            if problems:
                step("resume_from_commit", False, "; ".join(problems))
            else:
                step("resume_from_commit", True,
                     f"new kcat -G consumer got exactly the {RESUME} new records (none of the "
                     f"earlier {len(expected)}) and nothing more in 2s; committed on close")

    try:
        md = metadata()
        names = [t["topic"] for t in md.get("topics", [])]
        if TOPIC in names:
            step("list_topics", True, f"kcat -L -J: {TOPIC} among {len(names)} topics")
        else:
            step("list_topics", False, f"kcat -L -J: {TOPIC} not in {names}")
    except Exception as e:  # noqa: BLE001
        step("list_topics", False, repr(e))

    try:
        md = metadata(TOPIC)
        ts = [t for t in md.get("topics", []) if t.get("topic") == TOPIC]
        if not ts or ts[0].get("error"):
            step("describe_topic", False, f"kcat -L -J -t {TOPIC}: {ts}")
        else:
            parts = {p["partition"]: p.get("leader") for p in ts[0].get("partitions", [])}
            bad = {p: l for p, l in parts.items() if l != 0}
            if len(parts) == AUTO_CREATED_PARTITIONS and not bad:
                step("describe_topic", True,
                     f"kcat -L -J -t: {len(parts)} partition (auto-created; kcat cannot create "
                     f"the 3-partition topic), led by node 0")
            else:
                step("describe_topic", False,
                     f"kcat -L -J -t: partitions->leader {parts} (want {AUTO_CREATED_PARTITIONS} "
                     f"auto-created partition led by node 0)")
    except Exception as e:  # noqa: BLE001
        step("describe_topic", False, repr(e))

    step("describe_group", None,
         gap=f"{NO_ADMIN}: cannot list or describe groups or fetch committed offsets "
             f"(the commit is checked by resume_from_commit)")
    step("delete_topic", None, gap=f"{NO_ADMIN}: cannot delete topics")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
