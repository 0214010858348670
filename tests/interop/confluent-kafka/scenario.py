"""confluent-kafka (librdkafka) scenario of the interop matrix (see ../README.md).

Prints one JSON line per step on stdout; everything else goes to stderr.
"""
import os
import sys
import time

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

try:  # confluent-kafka >= 2.3 has TopicCollection / describe_topics
    from confluent_kafka import TopicCollection
except ImportError:  # pragma: no cover
    TopicCollection = None
from confluent_kafka import ConsumerGroupTopicPartitions

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from contract import (  # noqa: E402
    BOOTSTRAP, GROUP, PARTITIONS, TIMEOUT_S, TOPIC, Received, exit_code, log,
    poll_until_complete, produce_and_consume, step, step_guard,
)


def security():
    """librdkafka's settings for the listener the runner chose: SSL with the broker's CA
    (PETREL_SSL_CA), a client certificate (PETREL_SSL_CERT, PETREL_SSL_KEY), SASL
    (PETREL_SASL_*); none on PLAINTEXT."""
    ca = os.environ.get("PETREL_SSL_CA")
    if not ca:
        return {}
    config = {"security.protocol": "ssl", "ssl.ca.location": ca}
    if os.environ.get("PETREL_SSL_CERT"):
        config["ssl.certificate.location"] = os.environ["PETREL_SSL_CERT"]
        config["ssl.key.location"] = os.environ["PETREL_SSL_KEY"]
    if os.environ.get("PETREL_SASL_USER"):
        config["security.protocol"] = "sasl_ssl"
        config["sasl.mechanisms"] = os.environ["PETREL_SASL_MECHANISM"]
        config["sasl.username"] = os.environ["PETREL_SASL_USER"]
        config["sasl.password"] = os.environ["PETREL_SASL_PASSWORD"]
    return config


SECURITY = security()


def admin():
    return AdminClient({"bootstrap.servers": BOOTSTRAP, **SECURITY})


def create_topic(a):
    fut = a.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)],
                                operation_timeout=30, request_timeout=30)
    fut[TOPIC].result(timeout=60)  # the AdminClient `a` must outlive the future
    return f"{TOPIC}, {PARTITIONS} partitions"


def produce(codec, records):
    """Sends records with default settings plus compression.type; returns (acked keys, errors)."""
    p = Producer({"bootstrap.servers": BOOTSTRAP, "compression.type": codec, **SECURITY})
    acked, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key().decode()}: {err}")
        else:
            acked.append(msg.key().decode())

    for key, value, headers in records:
        while True:
            try:
                p.produce(TOPIC, key=key.encode(), value=value.encode(), headers=headers,
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(TIMEOUT_S)
    if left:
        errors.append(f"{left} records not acknowledged after {TIMEOUT_S}s")
    return acked, errors


def new_consumer():
    return Consumer({
        **SECURITY,
        "bootstrap.servers": BOOTSTRAP,
        "group.id": GROUP,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })


def consume(expected, extra_poll_s=0.0):
    """Subscribes a new consumer in GROUP and reads until every key of `expected`
    (key -> (value, headers)) arrived, then polls extra_poll_s more; commits synchronously
    and closes. Returns (problems, Received)."""
    c = new_consumer()
    c.subscribe([TOPIC])
    received = Received(expected)
    problems = []

    def poll():
        msg = c.poll(0.5)
        if msg is None:
            return True
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                problems.append(f"consumer error: {msg.error()}")
            return not msg.error().fatal()
        headers = [(k, v) for k, v in (msg.headers() or [])]
        received.add((msg.key() or b"").decode(), (msg.value() or b"").decode(), headers,
                     msg.partition(), msg.offset())
        return True

    try:
        poll_until_complete(received, poll, extra_poll_s)
        problems += received.problems()
        if received.got:
            try:
                c.commit(asynchronous=False)
            except KafkaException as e:
                problems.append(f"synchronous commit failed: {e}")
    finally:
        c.close()
    return problems, received


def main():
    log(f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}")

    a = admin()

    # 1. create_topic
    topic_ok = False
    with step_guard("create_topic", "create_topics"):
        step("create_topic", True, create_topic(a))
        topic_ok = True

    # 2-4. produce_<codec>, consume_group, resume_from_commit
    produced_total = produce_and_consume(produce, consume, {
        "produce": "",
        "consume": "committed synchronously",
        "resume": "committed",
    }, topic_ok=topic_ok)

    # 5. list_topics
    with step_guard("list_topics"):
        topics = a.list_topics(timeout=30).topics
        if TOPIC in topics:
            step("list_topics", True, f"{TOPIC} among {len(topics)} topics")
        else:
            step("list_topics", False, f"{TOPIC} not in {sorted(topics)}")

    # 6. describe_topic
    with step_guard("describe_topic"):
        if TopicCollection is None or not hasattr(a, "describe_topics"):
            md = a.list_topics(topic=TOPIC, timeout=30).topics[TOPIC]
            parts = {p.id: p.leader for p in md.partitions.values()}
            how = "list_topics(topic=...) metadata"
        else:
            desc = a.describe_topics(TopicCollection([TOPIC]), request_timeout=30)[TOPIC].result(timeout=60)
            parts = {p.id: p.leader.id if p.leader is not None else None for p in desc.partitions}
            how = "describe_topics"
        bad = {p: l for p, l in parts.items() if l != 0}
        if len(parts) == PARTITIONS and not bad:
            step("describe_topic", True, f"{how}: {PARTITIONS} partitions, each led by node 0")
        else:
            step("describe_topic", False, f"{how}: partitions->leader {parts} "
                                          f"(want {PARTITIONS} partitions led by node 0)")

    # 7. describe_group
    with step_guard("describe_group"):
        problems = []
        listed = a.list_consumer_groups(request_timeout=30).result(timeout=60)
        ids = [g.group_id for g in listed.valid]
        if listed.errors:
            problems.append(f"list_consumer_groups errors: {listed.errors}")
        if GROUP not in ids:
            problems.append(f"list_consumer_groups does not list {GROUP}: {ids}")
        d = a.describe_consumer_groups([GROUP], request_timeout=30)[GROUP].result(timeout=60)
        state = getattr(d.state, "name", str(d.state))
        gtype = getattr(getattr(d, "type", None), "name", None)
        if state != "EMPTY":
            problems.append(f"state {state}, want EMPTY")
        if d.is_simple_consumer_group:
            problems.append("described as a simple group (empty protocol type), want protocol type consumer")
        if d.members:
            problems.append(f"{len(d.members)} members, want 0")
        offs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(GROUP)],
                                             request_timeout=30)[GROUP].result(timeout=60)
        per_part = {tp.partition: tp.offset for tp in offs.topic_partitions if tp.topic == TOPIC}
        total = sum(o for o in per_part.values() if o >= 0)
        if total != produced_total:
            problems.append(f"committed offsets {per_part} sum to {total}, want {produced_total}")
        detail = (f"listed; state {state}, type {gtype}, protocol type consumer "
                  f"(not simple), committed offsets {dict(sorted(per_part.items()))} sum {total}")
        if problems:
            step("describe_group", False, "; ".join(problems) + f" ({detail})")
        else:
            step("describe_group", True, detail)

    # 8. delete_topic
    with step_guard("delete_topic"):
        a.delete_topics([TOPIC], operation_timeout=30, request_timeout=30)[TOPIC].result(timeout=60)
        deadline = time.monotonic() + 10
        while True:
            topics = a.list_topics(timeout=30).topics
            if TOPIC not in topics:
                step("delete_topic", True, f"{TOPIC} deleted and no longer listed")
                break
            if time.monotonic() >= deadline:
                step("delete_topic", False, f"{TOPIC} still listed 10s after delete_topics succeeded")
                break
            time.sleep(0.2)

    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
