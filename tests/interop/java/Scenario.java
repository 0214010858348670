// Interop scenario for the Java client (org.apache.kafka:kafka-clients) against Petrel.
// Contract: tests/interop/README.md. One JSON line per step on stdout; logs (slf4j-simple) go
// to stderr. Producers and consumers keep the client's default settings apart from what the
// contract sets (bootstrap servers, serializers, compression.type; group id,
// auto.offset.reset=earliest, enable.auto.commit=false).

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Scenario {
  static final int PARTITIONS = 3;
  static final int PER_CODEC = 300;
  static final int RESUME = 50;
  static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
  static final long ADMIN_TIMEOUT_S = 30;
  static final long PRODUCE_TIMEOUT_S = 150; // above the default delivery.timeout.ms (120 s)

  static String bootstrap;
  static String topic;
  static String group;
  static boolean failed = false;
  /** Codecs whose produce step passed: consume_group expects exactly their records. */
  static final List<String> produced = new ArrayList<>();
  static int resumeProduced = 0;

  public static void main(String[] args) {
    bootstrap = env("PETREL_BOOTSTRAP");
    String client = System.getenv().getOrDefault("INTEROP_CLIENT", "java");
    topic = "interop-" + client;
    group = topic + "-group";
    log("bootstrap " + bootstrap + ", topic " + topic + ", group " + group);

    run("create_topic", Scenario::createTopic);
    for (String codec : CODECS) {
      run("produce_" + codec, () -> {
        String d = produceCodec(codec);
        produced.add(codec);
        return d;
      });
    }
    run("consume_group", Scenario::consumeGroup);
    run("resume_from_commit", Scenario::resumeFromCommit);
    run("list_topics", Scenario::listTopics);
    run("describe_topic", Scenario::describeTopic);
    run("describe_group", Scenario::describeGroup);
    probeGap("petrel_gap_transactions", Scenario::transactionsProbe);
    probeGap("petrel_gap_kip848_consumer", Scenario::kip848Probe);
    run("delete_topic", Scenario::deleteTopic);
    System.out.flush();
    System.exit(failed ? 1 : 0);
  }

  // ---- steps ----

  static String createTopic() throws Exception {
    try (Admin admin = admin()) {
      admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all()
          .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
    }
    return topic + ", " + PARTITIONS + " partitions";
  }

  static String key(String codec, int i) { return codec + "-" + i; }

  static String value(String codec, int i) {
    return codec + ":" + i + ":" + "petrel".repeat(i % 40);
  }

  static String produceCodec(String codec) throws Exception {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    secure(p);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      List<Future<RecordMetadata>> acks = new ArrayList<>();
      for (int i = 0; i < PER_CODEC; i++) {
        ProducerRecord<String, String> r =
            new ProducerRecord<>(topic, key(codec, i), value(codec, i));
        r.headers().add("codec", utf8(codec)).add("i", utf8(Integer.toString(i)));
        acks.add(producer.send(r));
      }
      producer.flush();
      return awaitAcks(acks, codec);
    }
  }

  static String awaitAcks(List<Future<RecordMetadata>> acks, String what) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(PRODUCE_TIMEOUT_S);
    int[] perPartition = new int[PARTITIONS];
    for (Future<RecordMetadata> f : acks) {
      long left = Math.max(0, deadline - System.nanoTime());
      RecordMetadata md = f.get(left, TimeUnit.NANOSECONDS);
      if (md.partition() >= 0 && md.partition() < PARTITIONS) perPartition[md.partition()]++;
    }
    return acks.size() + " " + what + " records acknowledged, per partition "
        + Arrays.toString(perPartition);
  }

  static KafkaConsumer<String, String> consumer() {
    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    secure(c);
    c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    return new KafkaConsumer<>(c);
  }

  /** What is wrong with a record of the main run (null when it is exact). */
  static String checkRecord(ConsumerRecord<String, String> r, String codec, int i) {
    String k = key(codec, i);
    if (!value(codec, i).equals(r.value())) return k + ": wrong value " + abbrev(r.value());
    List<String> want = List.of("codec=" + codec, "i=" + i);
    List<String> got = headers(r);
    if (!want.equals(got)) return k + ": headers " + got + ", want " + want;
    return null;
  }

  static String consumeGroup() throws Exception {
    Set<String> expected = new LinkedHashSet<>();
    for (String codec : produced) {
      for (int i = 0; i < PER_CODEC; i++) expected.add(key(codec, i));
    }
    Set<String> seen = new HashSet<>();
    List<String> problems = new ArrayList<>();
    // last i seen per (partition, codec)
    Map<String, Integer> lastI = new HashMap<>();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    try (KafkaConsumer<String, String> consumer = consumer()) {
      consumer.subscribe(List.of(topic));
      while (!seen.containsAll(expected) && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          String k = r.key();
          int dash = k == null ? -1 : k.lastIndexOf('-');
          String codec = dash < 0 ? null : k.substring(0, dash);
          int i = -1;
          try {
            if (dash >= 0) i = Integer.parseInt(k.substring(dash + 1));
          } catch (NumberFormatException e) {
            i = -1;
          }
          if (codec == null || !Arrays.asList(CODECS).contains(codec) || i < 0 || i >= PER_CODEC) {
            problems.add("unexpected record key " + abbrev(k) + " at " + r.partition() + "@" + r.offset());
            continue;
          }
          if (!seen.add(k)) {
            problems.add(k + " arrived twice (again at " + r.partition() + "@" + r.offset() + ")");
            continue;
          }
          String bad = checkRecord(r, codec, i);
          if (bad != null) problems.add(bad);
          String pc = r.partition() + "/" + codec;
          Integer prev = lastI.put(pc, i);
          if (prev != null && prev >= i) {
            problems.add("partition " + r.partition() + ": " + k + " after " + key(codec, prev));
          }
        }
      }
      if (seen.containsAll(expected) && problems.isEmpty()) {
        consumer.commitSync(Duration.ofSeconds(ADMIN_TIMEOUT_S));
      }
    }
    List<String> missing = new ArrayList<>();
    for (String k : expected) if (!seen.contains(k)) missing.add(k);
    if (!missing.isEmpty()) {
      problems.add(0, "missing " + missing.size() + " records: " + first(missing, 5));
    }
    if (!problems.isEmpty()) throw new StepFailed(problems.size() + " problems: " + first(problems, 5));
    return seen.size() + " records of " + produced + " exact (key, value, headers), no duplicates, "
        + "in order per partition; committed";
  }

  static String resumeFromCommit() throws Exception {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    secure(p);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      List<Future<RecordMetadata>> acks = new ArrayList<>();
      for (int i = 0; i < RESUME; i++) {
        ProducerRecord<String, String> r =
            new ProducerRecord<>(topic, "resume-" + i, "resume:" + i);
        r.headers().add("codec", utf8("resume")).add("i", utf8(Integer.toString(i)));
        acks.add(producer.send(r));
      }
      producer.flush();
      awaitAcks(acks, "resume");
    }
    resumeProduced = RESUME;
    Set<String> want = new LinkedHashSet<>();
    for (int i = 0; i < RESUME; i++) want.add("resume-" + i);
    Set<String> seen = new HashSet<>();
    List<String> problems = new ArrayList<>();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    Long extraUntil = null;
    try (KafkaConsumer<String, String> consumer = consumer()) {
      consumer.subscribe(List.of(topic));
      while (true) {
        long now = System.nanoTime();
        if (extraUntil == null && seen.containsAll(want)) {
          extraUntil = now + TimeUnit.SECONDS.toNanos(2);
        }
        if (extraUntil != null ? now >= extraUntil : now >= deadline) break;
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
          String k = r.key();
          if (k == null || !want.contains(k)) {
            problems.add("unexpected record " + abbrev(k) + " at " + r.partition() + "@" + r.offset());
            continue;
          }
          if (!seen.add(k)) {
            problems.add(k + " arrived twice");
            continue;
          }
          String i = k.substring("resume-".length());
          if (!("resume:" + i).equals(r.value())) problems.add(k + ": wrong value " + abbrev(r.value()));
          List<String> wantH = List.of("codec=resume", "i=" + i);
          if (!wantH.equals(headers(r))) problems.add(k + ": headers " + headers(r) + ", want " + wantH);
        }
      }
      if (seen.containsAll(want) && problems.isEmpty()) {
        consumer.commitSync(Duration.ofSeconds(ADMIN_TIMEOUT_S));
      }
    }
    List<String> missing = new ArrayList<>();
    for (String k : want) if (!seen.contains(k)) missing.add(k);
    if (!missing.isEmpty()) {
      problems.add(0, "missing " + missing.size() + " records: " + first(missing, 5));
    }
    if (!problems.isEmpty()) throw new StepFailed(problems.size() + " problems: " + first(problems, 5));
    return "new consumer got exactly the " + RESUME + " new records (+2 s of polling); committed";
  }

  static String listTopics() throws Exception {
    try (Admin admin = admin()) {
      Set<String> names = admin.listTopics().names().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
      if (!names.contains(topic)) throw new StepFailed("listTopics lacks " + topic + ": " + names);
      return "listTopics has " + topic + " (" + names.size() + " topics)";
    }
  }

  static String describeTopic() throws Exception {
    try (Admin admin = admin()) {
      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames()
          .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS).get(topic);
      if (d == null) throw new StepFailed("describeTopics returned nothing for " + topic);
      List<String> problems = new ArrayList<>();
      if (d.partitions().size() != PARTITIONS) {
        problems.add(d.partitions().size() + " partitions, want " + PARTITIONS);
      }
      for (TopicPartitionInfo p : d.partitions()) {
        if (p.leader() == null || p.leader().id() != 0) {
          problems.add("partition " + p.partition() + " leader " + p.leader());
        }
      }
      if (!problems.isEmpty()) throw new StepFailed(String.join("; ", problems));
      return topic + ": " + d.partitions().size() + " partitions, leader 0 each, topic id "
          + d.topicId();
    }
  }

  static String describeGroup() throws Exception {
    try (Admin admin = admin()) {
      List<String> problems = new ArrayList<>();
      Collection<GroupListing> groups = admin.listGroups(ListGroupsOptions.forConsumerGroups())
          .all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
      GroupListing listing = null;
      for (GroupListing g : groups) if (g.groupId().equals(group)) listing = g;
      if (listing == null) {
        problems.add("listGroups lacks " + group + ": " + groups);
      } else if (!"consumer".equals(listing.protocol())) {
        problems.add("listGroups: protocol type " + listing.protocol() + ", want consumer");
      }
      ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all()
          .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS).get(group);
      if (d.groupState() != GroupState.EMPTY) problems.add("state " + d.groupState() + ", want Empty");
      if (!d.members().isEmpty()) problems.add(d.members().size() + " members, want none");
      Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group)
          .partitionsToOffsetAndMetadata().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
      long sum = 0;
      int parts = 0;
      for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
        if (!e.getKey().topic().equals(topic) || e.getValue() == null) continue;
        sum += e.getValue().offset();
        parts++;
      }
      long want = (long) produced.size() * PER_CODEC + resumeProduced;
      if (parts != PARTITIONS) problems.add("committed offsets for " + parts + " partitions, want " + PARTITIONS);
      if (sum != want) problems.add("committed offsets sum to " + sum + ", want " + want);
      if (!problems.isEmpty()) throw new StepFailed(String.join("; ", problems));
      return group + ": listed (protocol type consumer), state " + d.groupState()
          + ", type " + d.type() + ", committed offsets sum " + sum + " over " + parts + " partitions";
    }
  }

  static String deleteTopic() throws Exception {
    try (Admin admin = admin()) {
      admin.deleteTopics(List.of(topic)).all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
      Set<String> names = admin.listTopics().names().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
      if (names.contains(topic)) throw new StepFailed("listTopics still has " + topic + " after deleteTopics");
      return "deleted " + topic + "; listTopics no longer has it";
    }
  }

  // ---- Petrel's documented gaps (tests/interop/known-gaps.md), probed so that the error a
  // user meets is the one documented: a gap line when it is, a failure when it is not. ----

  /** A transactional producer: InitProducerId answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED. */
  static String transactionsProbe() throws Exception {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    secure(p);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-txn");
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000"); // fail fast if the error is not the documented one
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      producer.initTransactions();
      throw new StepFailed("initTransactions() succeeded: update known-gaps.md");
    } catch (org.apache.kafka.common.errors.TransactionalIdAuthorizationException e) {
      return "transactions (transactional.id): initTransactions() throws "
          + e.getClass().getSimpleName() + ": " + e.getMessage();
    }
  }

  /** group.protocol=consumer (KIP-848): ConsumerGroupHeartbeat is not advertised. */
  static String kip848Probe() throws Exception {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    secure(p);
    p.put(ConsumerConfig.GROUP_ID_CONFIG, group + "-kip848");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
      while (System.nanoTime() < deadline) consumer.poll(Duration.ofMillis(500));
      throw new StepFailed("group.protocol=consumer polled for 20 s without an error: update known-gaps.md");
    } catch (org.apache.kafka.common.errors.UnsupportedVersionException e) {
      return "KIP-848 consumer protocol (group.protocol=consumer): poll() throws "
          + e.getClass().getSimpleName() + ": " + e.getMessage();
    }
  }

  /** Runs a probe of a documented gap: its text is printed as a gap (ok null) when the
   * client meets exactly the documented error, as a failure otherwise. */
  static void probeGap(String step, Step body) {
    log("step " + step + " starting");
    try {
      String observed = body.run();
      System.out.println("{\"step\": " + json(step) + ", \"ok\": null, \"gap\": " + json("Petrel gap: " + observed) + "}");
      System.out.flush();
      log("step " + step + " gap: " + observed);
    } catch (StepFailed e) {
      emit(step, false, e.getMessage());
    } catch (Throwable e) {
      Throwable cause = (e instanceof ExecutionException && e.getCause() != null) ? e.getCause() : e;
      e.printStackTrace(System.err);
      emit(step, false, "not the documented error: " + cause.getClass().getName() + ": " + cause.getMessage());
    }
  }

  // ---- helpers ----

  interface Step { String run() throws Exception; }

  static class StepFailed extends Exception {
    StepFailed(String m) { super(m); }
  }

  static void run(String step, Step body) {
    log("step " + step + " starting");
    try {
      String detail = body.run();
      emit(step, true, detail);
    } catch (StepFailed e) {
      emit(step, false, e.getMessage());
    } catch (Throwable e) {
      Throwable cause = (e instanceof ExecutionException && e.getCause() != null) ? e.getCause() : e;
      log("step " + step + " threw:");
      e.printStackTrace(System.err);
      emit(step, false, cause.getClass().getName() + ": " + cause.getMessage());
    }
  }

  static void emit(String step, boolean ok, String detail) {
    if (!ok) failed = true;
    System.out.println("{\"step\": " + json(step) + ", \"ok\": " + ok + ", \"detail\": " + json(detail) + "}");
    System.out.flush();
    log("step " + step + " ok=" + ok + ": " + detail);
  }

  static Admin admin() {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    secure(p);
    return Admin.create(p);
  }

  static List<String> headers(ConsumerRecord<?, ?> r) {
    List<String> out = new ArrayList<>();
    for (Header h : r.headers()) {
      out.add(h.key() + "=" + (h.value() == null ? "null" : new String(h.value(), StandardCharsets.UTF_8)));
    }
    return out;
  }

  static byte[] utf8(String s) { return s.getBytes(StandardCharsets.UTF_8); }

  static String abbrev(String s) {
    if (s == null) return "null";
    return s.length() > 40 ? s.substring(0, 40) + "..." : s;
  }

  static String first(List<String> items, int n) {
    String s = String.join(", ", items.subList(0, Math.min(n, items.size())));
    return items.size() > n ? s + ", ..." : s;
  }

  /**
   * SSL when the runner set PETREL_SSL_CA (java-ssl, java-sasl): the broker's CA as a PEM
   * truststore and, with PETREL_SSL_CERT/PETREL_SSL_KEY, a client certificate (mTLS); with
   * PETREL_SASL_MECHANISM, SASL_SSL as PETREL_SASL_USER with PETREL_SASL_PASSWORD.
   */
  static void secure(Properties p) {
    String ca = System.getenv("PETREL_SSL_CA");
    if (ca == null) {
      return;
    }
    p.put("security.protocol", "SSL");
    p.put("ssl.truststore.type", "PEM");
    p.put("ssl.truststore.location", ca);
    String mechanism = System.getenv("PETREL_SASL_MECHANISM");
    if (mechanism != null) {
      p.put("security.protocol", "SASL_SSL");
      p.put("sasl.mechanism", mechanism);
      p.put("sasl.jaas.config",
          "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
              + System.getenv("PETREL_SASL_USER") + "\" password=\""
              + System.getenv("PETREL_SASL_PASSWORD") + "\";");
    }
    String cert = System.getenv("PETREL_SSL_CERT");
    String key = System.getenv("PETREL_SSL_KEY");
    if (cert != null && key != null) {
      try {
        p.put("ssl.keystore.type", "PEM");
        p.put("ssl.keystore.certificate.chain", java.nio.file.Files.readString(java.nio.file.Path.of(cert)));
        p.put("ssl.keystore.key", java.nio.file.Files.readString(java.nio.file.Path.of(key)));
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    }
  }

  static String env(String name) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) {
      System.err.println(name + " is not set");
      System.exit(2);
    }
    return v;
  }

  static void log(String m) { System.err.println("[java scenario] " + m); }

  static String json(String s) {
    if (s == null) return "null";
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      switch (c) {
        case '"': b.append("\\\""); break;
        case '\\': b.append("\\\\"); break;
        case '\n': b.append("\\n"); break;
        case '\r': b.append("\\r"); break;
        case '\t': b.append("\\t"); break;
        default:
          if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
          else b.append(c);
      }
    }
    return b.append('"').toString();
  }
}
