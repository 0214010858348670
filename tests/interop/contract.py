"""The scenario contract of README.md for the Python scenarios (confluent-kafka, kafka-python,
kcat): names, the records, the JSON step lines, the check of what a consumer received, and
steps 2-4 (produce every codec, consume in a group, resume from the commit), which differ
between clients only in how they produce and consume.

A scenario imports it with its own directory's parent on sys.path.
"""
import contextlib
import json
import os
import sys
import time
import traceback

BOOTSTRAP = os.environ["PETREL_BOOTSTRAP"]
# The driver sets it; run by hand, the scenario's directory names the client.
CLIENT = os.environ.get("INTEROP_CLIENT") or os.path.basename(
    os.path.dirname(os.path.abspath(sys.argv[0]))
)
TOPIC = f"interop-{CLIENT}"
GROUP = f"interop-{CLIENT}-group"
PARTITIONS = 3
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 300
RESUME = 50
TIMEOUT_S = 60

failures = 0


def log(msg):
    print(f"[{CLIENT}] {msg}", file=sys.stderr, flush=True)


def step(name, ok, detail=None, gap=None):
    """Prints one step line: ok True (passed), False (failed) or None (a gap of the client)."""
    global failures
    out = {"step": name, "ok": ok}
    if gap is not None:
        out["gap"] = gap
    if detail is not None:
        out["detail"] = str(detail)[:2000]
    if ok is False:
        failures += 1
    print(json.dumps(out), flush=True)


@contextlib.contextmanager
def step_guard(name, context=None):
    """Runs a step's body, which reports its own outcome; an exception fails the step with
    the exception (prefixed by `context`, the call that raised) and its traceback."""
    try:
        yield
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        step(name, False, f"{context}: {e!r}" if context else repr(e))


def exit_code():
    return 1 if failures else 0


def _header_value(text, as_bytes):
    return text.encode() if as_bytes else text


def record(codec, i, as_bytes=True):
    """Record i of codec: (key, value, headers); header values are bytes unless the client
    hands them over as text (kcat)."""
    key = f"{codec}-{i}"
    value = f"{codec}:{i}:" + "petrel" * (i % 40)
    headers = [("codec", _header_value(codec, as_bytes)), ("i", _header_value(str(i), as_bytes))]
    return key, value, headers


def resume_record(i, as_bytes=True):
    headers = [("codec", _header_value("resume", as_bytes)), ("i", _header_value(str(i), as_bytes))]
    return f"resume-{i}", f"resume:{i}", headers


def summarize(items, n=10):
    items = sorted(items)
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


class Received:
    """What one consumer received, checked against `expected` (key -> (value, headers)):
    every record exactly once, with its exact value and headers, and within a partition the
    records of each codec in increasing i."""

    def __init__(self, expected):
        self.expected = expected
        self.got = {}  # key -> (partition, offset)
        self.dupes, self.wrong, self.unexpected, self.order = [], [], [], []
        self.last_i = {}  # (partition, codec) -> last i

    def add(self, key, value, headers, partition, offset):
        if key in self.got:
            self.dupes.append(key)
            return
        self.got[key] = (partition, offset)
        if key not in self.expected:
            self.unexpected.append(key)
            return
        want_value, want_headers = self.expected[key]
        if value != want_value or headers != want_headers:
            self.wrong.append(f"{key} (value {value!r}, headers {headers!r})")
        codec, i = _text(want_headers[0][1]), int(_text(want_headers[1][1]))
        prev = self.last_i.get((partition, codec))
        if prev is not None and i <= prev:
            self.order.append(f"{key} after {codec}-{prev} in partition {partition}")
        self.last_i[(partition, codec)] = i

    def complete(self):
        return set(self.got) >= set(self.expected)

    def partitions(self):
        return sorted({p for p, _ in self.got.values()})

    def problems(self):
        problems = []
        missing = [k for k in self.expected if k not in self.got]
        if missing:
            problems.append(f"missing {len(missing)} records after {TIMEOUT_S}s: {summarize(missing)}")
        if self.dupes:
            problems.append(f"{len(self.dupes)} records arrived twice: {summarize(self.dupes)}")
        if self.unexpected:
            problems.append(f"{len(self.unexpected)} unexpected records: {summarize(self.unexpected)}")
        if self.wrong:
            problems.append(f"{len(self.wrong)} records with wrong value/headers: {'; '.join(self.wrong[:5])}")
        if self.order:
            problems.append(f"out of order within a partition: {'; '.join(self.order[:5])}")
        return problems


def poll_until_complete(received, poll, extra_poll_s):
    """Calls poll() (which feeds `received` and returns False once the consumer has ended)
    until every expected record arrived, then extra_poll_s more, at most TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    extra_deadline = None
    while True:
        now = time.monotonic()
        if extra_deadline is None and received.complete():
            extra_deadline = now + extra_poll_s
        if (extra_deadline is not None and now >= extra_deadline) or now >= deadline:
            return
        if poll() is False:
            return


def produce_and_consume(produce, consume, how, as_bytes=True, topic_ok=True):
    """Steps 2-4. produce(codec, records) -> (acked keys, errors); consume(expected,
    extra_poll_s) -> (problems, Received). `how` describes the client's way for the step
    details: keys 'produce' (a format with {codec}), 'consume' and 'resume'. Returns the
    number of records acknowledged."""
    expected = {}
    for codec in CODECS:
        name = f"produce_{codec}"
        if not topic_ok:
            step(name, False, "not run: create_topic failed")
            continue
        records = [record(codec, i, as_bytes) for i in range(PER_CODEC)]
        started = time.monotonic()
        try:
            acked, errors = produce(codec, records)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            acked, errors = [], [repr(e)]
        acked_set = set(acked)
        for key, value, headers in records:
            if key in acked_set:
                expected[key] = (value, headers)
        if errors or len(acked_set) != PER_CODEC:
            step(name, False, f"{len(acked_set)}/{PER_CODEC} acknowledged; errors: {'; '.join(errors[:5])}")
        else:
            step(name, True, f"{PER_CODEC} records acknowledged in {time.monotonic() - started:.1f}s"
                             + how["produce"].format(codec=codec))

    consumed_ok = False
    if not expected:
        step("consume_group", False, "not run: nothing was produced")
    else:
        with step_guard("consume_group"):
            started = time.monotonic()
            problems, received = consume(expected, 0.0)
            if problems:
                step("consume_group", False, "; ".join(problems))
            else:
                step("consume_group", True,
                     f"{len(received.got)} records, exact keys/values/headers, in order, from "
                     f"partitions {received.partitions()} in {time.monotonic() - started:.1f}s; "
                     + how["consume"])
                consumed_ok = True

    produced = len(expected)
    if not consumed_ok:
        step("resume_from_commit", False, "not run: consume_group failed")
        return produced
    with step_guard("resume_from_commit"):
        records = [resume_record(i, as_bytes) for i in range(RESUME)]
        acked, errors = produce("none", records)
        produced += len(set(acked))
        if errors or len(set(acked)) != RESUME:
            step("resume_from_commit", False,
                 f"producing: {len(set(acked))}/{RESUME} acknowledged; {'; '.join(errors[:5])}")
            return produced
        problems, _ = consume({k: (v, h) for k, v, h in records}, 2.0)
        if problems:
            step("resume_from_commit", False, "; ".join(problems))
        else:
            step("resume_from_commit", True,
                 f"a new consumer got exactly the {RESUME} new records (none of the earlier "
                 f"{len(expected)}) and nothing more in 2s; " + how["resume"])
    return produced
