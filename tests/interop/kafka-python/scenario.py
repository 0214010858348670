"""kafka-python scenario of the interop matrix (see ../README.md).

Prints one JSON line per step on stdout; everything else goes to stderr.
"""
import json
import os
import sys
import time
import traceback

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

BOOTSTRAP = os.environ["PETREL_BOOTSTRAP"]
CLIENT = os.environ.get("INTEROP_CLIENT", "kafka-python")
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
    key = f"{codec}-{i}"
    value = f"{codec}:{i}:" + "petrel" * (i % 40)
    headers = [("codec", codec.encode()), ("i", str(i).encode())]  # (str, bytes)
    return key, value, headers


def resume_record(i):
    return f"resume-{i}", f"resume:{i}", [("codec", b"resume"), ("i", str(i).encode())]


def summarize(items, n=10):
    items = sorted(items)
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def admin():
    return KafkaAdminClient(bootstrap_servers=BOOTSTRAP)


def produce(codec, records):
    """Sends records with default settings plus compression_type; returns (acked keys, errors)."""
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP,
                      compression_type=None if codec == "none" else codec)
    acked, errors = [], []
    try:
        futures = [(key, p.send(TOPIC, key=key.encode(), value=value.encode(), headers=headers))
                   for key, value, headers in records]
        p.flush(timeout=TIMEOUT_S)
        for key, fut in futures:
            try:
                fut.get(timeout=TIMEOUT_S)
                acked.append(key)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{key}: {e!r}")
    finally:
        p.close(timeout=10)
    return acked, errors


def consume(expected, extra_poll_s=0.0):
    """Subscribes a new consumer in GROUP and reads until every key of `expected`
    (key -> (value, headers)) arrived, then polls extra_poll_s more; commits synchronously
    and closes. Returns (problems, got)."""
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=GROUP,
                      auto_offset_reset="earliest", enable_auto_commit=False)
    c.subscribe([TOPIC])
    got = {}
    dupes, wrong, unexpected, order = [], [], [], []
    last_i = {}  # (partition, codec) -> last i
    deadline = time.monotonic() + TIMEOUT_S
    extra_deadline = None
    problems = []
    try:
        while True:
            now = time.monotonic()
            if extra_deadline is None and set(got) >= set(expected):
                extra_deadline = now + extra_poll_s
            if extra_deadline is not None and now >= extra_deadline:
                break
            if now >= deadline:
                break
            batches = c.poll(timeout_ms=500)
            for tp, msgs in batches.items():
                for msg in msgs:
                    key = (msg.key or b"").decode()
                    value = (msg.value or b"").decode()
                    headers = [(k, v) for k, v in (msg.headers or [])]
                    if key in got:
                        dupes.append(key)
                        continue
                    got[key] = (msg.partition, msg.offset)
                    if key not in expected:
                        unexpected.append(key)
                        continue
                    want_value, want_headers = expected[key]
                    if value != want_value or headers != want_headers:
                        wrong.append(f"{key} (value {value!r}, headers {headers!r})")
                    codec = want_headers[0][1].decode()
                    i = int(want_headers[1][1])
                    prev = last_i.get((msg.partition, codec))
                    if prev is not None and i <= prev:
                        order.append(f"{key} after {codec}-{prev} in partition {msg.partition}")
                    last_i[(msg.partition, codec)] = i
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
        if got:
            try:
                c.commit()  # synchronous in kafka-python
            except Exception as e:  # noqa: BLE001
                problems.append(f"synchronous commit failed: {e!r}")
    finally:
        c.close()
    return problems, got


def main():
    log(f"kafka-python {kafka.__version__}")
    a = admin()

    # 1. create_topic
    try:
        a.create_topics({TOPIC: {"num_partitions": PARTITIONS, "replication_factor": 1}},
                        timeout_ms=30000)
        step("create_topic", True, f"{TOPIC}, {PARTITIONS} partitions")
        topic_ok = True
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        step("create_topic", False, f"create_topics: {e!r}")
        topic_ok = False

    # 2. produce_<codec>
    expected = {}
    for codec in CODECS:
        if not topic_ok:
            step(f"produce_{codec}", False, "not run: create_topic failed")
            continue
        records = [record(codec, i) for i in range(PER_CODEC)]
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
        secs = time.monotonic() - started
        if errors or len(acked_set) != PER_CODEC:
            step(f"produce_{codec}", False,
                 f"{len(acked_set)}/{PER_CODEC} acknowledged; errors: {'; '.join(errors[:5])}")
        else:
            step(f"produce_{codec}", True, f"{PER_CODEC} records acknowledged in {secs:.1f}s")

    # 3. consume_group
    consumed_ok = False
    if not expected:
        step("consume_group", False, "not run: nothing was produced")
    else:
        try:
            started = time.monotonic()
            problems, got = consume(expected)
            if problems:
                step("consume_group", False, "; ".join(problems))
            else:
                parts = sorted({p for p, _ in got.values()})
                step("consume_group", True,
                     f"{len(got)} records, exact keys/values/headers, in order, from partitions "
                     f"{parts} in {time.monotonic() - started:.1f}s; committed synchronously")
                consumed_ok = True
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            step("consume_group", False, repr(e))

    # 4. resume_from_commit
    produced_total = len(expected)
    if not consumed_ok:
        step("resume_from_commit", False, "not run: consume_group failed")
    else:
        try:
            records = [resume_record(i) for i in range(RESUME)]
            acked, errors = produce("none", records)
            produced_total += len(set(acked))
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
                         f"new consumer got exactly the {RESUME} new records (none of the earlier "
                         f"{len(expected)}) and nothing more in 2s; committed")
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            step("resume_from_commit", False, repr(e))

    # 5. list_topics
    try:
        topics = a.list_topics()
        if TOPIC in topics:
            step("list_topics", True, f"list_topics: {TOPIC} among {len(topics)} topics")
        else:
            step("list_topics", False, f"list_topics: {TOPIC} not in {sorted(topics)}")
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        step("list_topics", False, repr(e))

    # 6. describe_topic
    try:
        desc = [t for t in a.describe_topics([TOPIC]) if t.get("name") == TOPIC]
        if not desc:
            step("describe_topic", False, f"describe_topics returned nothing for {TOPIC}")
        else:
            t = desc[0]
            parts = {p["partition_index"]: p["leader_id"] for p in t.get("partitions", [])}
            bad = {p: l for p, l in parts.items() if l != 0}
            if t.get("error_code"):
                step("describe_topic", False, f"describe_topics: error_code {t['error_code']}")
            elif len(parts) == PARTITIONS and not bad:
                step("describe_topic", True, f"describe_topics: {PARTITIONS} partitions, each led by node 0")
            else:
                step("describe_topic", False, f"describe_topics: partitions->leader {parts} "
                                              f"(want {PARTITIONS} partitions led by node 0)")
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        step("describe_topic", False, repr(e))

    # 7. describe_group
    try:
        problems = []
        listed = a.list_groups()
        mine = [g for g in listed if g.get("group_id") == GROUP]
        if not mine:
            problems.append(f"list_groups does not list {GROUP}: {[g.get('group_id') for g in listed]}")
        elif mine[0].get("protocol_type") != "consumer":
            problems.append(f"list_groups: protocol type {mine[0].get('protocol_type')!r}, want 'consumer'")
        d = a.describe_groups([GROUP])[GROUP]
        if d.get("error"):
            problems.append(f"describe_groups error: {d['error']}")
        state, ptype = d.get("group_state"), d.get("protocol_type")
        if state != "Empty":
            problems.append(f"state {state!r}, want 'Empty'")
        if ptype != "consumer":
            problems.append(f"protocol type {ptype!r}, want 'consumer'")
        if d.get("members"):
            problems.append(f"{len(d['members'])} members, want 0")
        offs = a.list_group_offsets(GROUP)[GROUP]
        per_part = {tp.partition: om.offset for tp, om in offs.items() if tp.topic == TOPIC}
        total = sum(o for o in per_part.values() if o >= 0)
        if total != produced_total:
            problems.append(f"committed offsets {per_part} sum to {total}, want {produced_total}")
        detail = (f"list_groups lists it; describe_groups: state {state}, protocol type {ptype}; "
                  f"list_group_offsets {dict(sorted(per_part.items()))} sum {total}")
        if problems:
            step("describe_group", False, "; ".join(problems) + f" ({detail})")
        else:
            step("describe_group", True, detail)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        step("describe_group", False, repr(e))

    # 8. delete_topic
    try:
        a.delete_topics([TOPIC], timeout_ms=30000)
        deadline = time.monotonic() + 10
        while True:
            topics = a.list_topics()
            if TOPIC not in topics:
                step("delete_topic", True, f"delete_topics: {TOPIC} deleted and no longer listed")
                break
            if time.monotonic() >= deadline:
                step("delete_topic", False, f"{TOPIC} still listed 10s after delete_topics succeeded")
                break
            time.sleep(0.2)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        step("delete_topic", False, repr(e))
    finally:
        a.close()

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
