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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from contract import (  # noqa: E402
    BOOTSTRAP, GROUP, TIMEOUT_S, TOPIC, Received, exit_code, log, poll_until_complete,
    produce_and_consume, step,
)

AUTO_CREATED_PARTITIONS = 1  # Petrel's --default-partitions default
NO_ADMIN = "kcat has no admin API"


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
    SIGTERM (kcat then closes the consumer, which commits). Returns (problems, Received)."""
    cmd = ["kcat", "-b", BOOTSTRAP, "-G", GROUP, "-X", "auto.offset.reset=earliest", "-u",
           "-f", r"%p\t%o\t%k\t%s\t%h\n", TOPIC]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    lines = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    received = Received(expected)
    garbled = []
    ended = []

    def poll():
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            return True
        if line is None:
            ended.append(True)
            return False
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 5:
            garbled.append(line.rstrip("\n"))
            return True
        partition, offset, key, value, headers = fields
        received.add(key, value, parse_headers(headers), int(partition), int(offset))
        return True

    poll_until_complete(received, poll, extra_poll_s)
    problems = []
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
    problems += received.problems()
    if garbled:
        problems.append(f"{len(garbled)} unparseable lines: {garbled[:3]}")
    return problems, received


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

    produce_and_consume(produce, consume, {
        "produce": ", one `kcat -P -z {codec}` run each (librdkafka sends a one-record batch "
                   "uncompressed when compressing would not shrink it: the short values)",
        "consume": "kcat -G; offsets committed on close (kcat has no explicit commit: "
                   "auto-commit)",
        "resume": "committed on close",
    }, as_bytes=False)

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
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
