"""kafka-python scenario of the interop matrix (see ../README.md).

Prints one JSON line per step on stdout; everything else goes to stderr.
"""
import os
import sys
import time

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from contract import (  # noqa: E402
    BOOTSTRAP, GROUP, PARTITIONS, TIMEOUT_S, TOPIC, Received, exit_code, log,
    poll_until_complete, produce_and_consume, step, step_guard,
)


def security():
    """kafka-python's settings for the listener the runner chose: SSL with the broker's CA
    (PETREL_SSL_CA), a client certificate (PETREL_SSL_CERT, PETREL_SSL_KEY), SASL
    (PETREL_SASL_*); none on PLAINTEXT."""
    ca = os.environ.get("PETREL_SSL_CA")
    if not ca:
        return {}
    config = {"security_protocol": "SSL", "ssl_cafile": ca}
    if os.environ.get("PETREL_SSL_CERT"):
        config["ssl_certfile"] = os.environ["PETREL_SSL_CERT"]
        config["ssl_keyfile"] = os.environ["PETREL_SSL_KEY"]
    if os.environ.get("PETREL_SASL_USER"):
        config["security_protocol"] = "SASL_SSL"
        config["sasl_mechanism"] = os.environ["PETREL_SASL_MECHANISM"]
        config["sasl_plain_username"] = os.environ["PETREL_SASL_USER"]
        config["sasl_plain_password"] = os.environ["PETREL_SASL_PASSWORD"]
    return config


SECURITY = security()


def admin():
    return KafkaAdminClient(bootstrap_servers=BOOTSTRAP, **SECURITY)


def produce(codec, records):
    """Sends records with default settings plus compression_type; returns (acked keys, errors)."""
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP,
                      compression_type=None if codec == "none" else codec, **SECURITY)
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
    and closes. Returns (problems, Received)."""
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=GROUP,
                      auto_offset_reset="earliest", enable_auto_commit=False, **SECURITY)
    c.subscribe([TOPIC])
    received = Received(expected)
    problems = []

    def poll():
        for msgs in c.poll(timeout_ms=500).values():
            for msg in msgs:
                headers = [(k, v) for k, v in (msg.headers or [])]
                received.add((msg.key or b"").decode(), (msg.value or b"").decode(), headers,
                             msg.partition, msg.offset)
        return True

    try:
        poll_until_complete(received, poll, extra_poll_s)
        problems += received.problems()
        if received.got:
            try:
                c.commit()  # synchronous in kafka-python
            except Exception as e:  # noqa: BLE001
                problems.append(f"synchronous commit failed: {e!r}")
    finally:
        c.close()
    return problems, received


def main():
    log(f"kafka-python {kafka.__version__}")
    a = admin()

    # 1. create_topic
    topic_ok = False
    with step_guard("create_topic", "create_topics"):
        a.create_topics({TOPIC: {"num_partitions": PARTITIONS, "replication_factor": 1}},
                        timeout_ms=30000)
        step("create_topic", True, f"{TOPIC}, {PARTITIONS} partitions")
        topic_ok = True

    # 2-4. produce_<codec>, consume_group, resume_from_commit
    produced_total = produce_and_consume(produce, consume, {
        "produce": "",
        "consume": "committed synchronously",
        "resume": "committed",
    }, topic_ok=topic_ok)

    # 5. list_topics
    with step_guard("list_topics"):
        topics = a.list_topics()
        if TOPIC in topics:
            step("list_topics", True, f"list_topics: {TOPIC} among {len(topics)} topics")
        else:
            step("list_topics", False, f"list_topics: {TOPIC} not in {sorted(topics)}")

    # 6. describe_topic
    with step_guard("describe_topic"):
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

    # 7. describe_group
    with step_guard("describe_group"):
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

    # 8. delete_topic
    with step_guard("delete_topic"):
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
    a.close()

    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
