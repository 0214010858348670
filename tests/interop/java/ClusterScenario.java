// Cluster scenario for the Java client against three Petrel brokers (tests/interop/run
// starts them; README.md, "Cluster scenario"). A replicated topic (RF 3, min.insync.replicas
// 2), an idempotent acks=all producer that keeps sending while the leader of partition 0 is
// SIGKILLed, then a consumer that must read every acknowledged record exactly once, in
// order per partition. One JSON line per step on stdout; logs on stderr. As java-cluster-secure
// the same over SASL_SSL (Scenario.secure) against a cluster with security on every link.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ClusterScenario {
  static final int PARTITIONS = 3;
  static final int RECORDS = 3000;
  static final int KILL_AFTER = 1000;
  static final long TIMEOUT_S = 150;

  static String bootstrap;
  static String topic = "interop-java-cluster";
  static boolean failed = false;
  static final Map<String, Integer> acked = new ConcurrentHashMap<>();

  public static void main(String[] args) {
    bootstrap = Scenario.env("PETREL_BOOTSTRAP");
    Scenario.bootstrap = bootstrap;
    run("cluster_create_topic", ClusterScenario::createTopic);
    run("cluster_describe_topic", ClusterScenario::describeTopic);
    run("cluster_produce_through_leader_kill", ClusterScenario::produceThroughKill);
    run("cluster_consume_exactly_once", ClusterScenario::consumeAll);
    System.out.flush();
    System.exit(failed ? 1 : 0);
  }

  static String createTopic() throws Exception {
    try (Admin admin = Scenario.admin()) {
      admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 3)
              .configs(Map.of("min.insync.replicas", "2"))))
          .all().get(30, TimeUnit.SECONDS);
    }
    return topic + ", " + PARTITIONS + " partitions, replication factor 3, min.insync.replicas 2";
  }

  static List<TopicPartitionInfo> partitions() throws Exception {
    try (Admin admin = Scenario.admin()) {
      return admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS)
          .get(topic).partitions();
    }
  }

  static String describeTopic() throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (true) {
      List<TopicPartitionInfo> info = partitions();
      boolean ready = info.size() == PARTITIONS && info.stream().allMatch(p ->
          p.leader() != null && p.replicas().size() == 3 && p.isr().size() == 3);
      if (ready) {
        StringBuilder b = new StringBuilder();
        for (TopicPartitionInfo p : info) {
          b.append(" p").append(p.partition()).append(" leader ").append(p.leader().id())
              .append(" isr ").append(p.isr().size());
        }
        return "every partition led, 3 replicas, 3 in sync:" + b;
      }
      if (System.nanoTime() > deadline) throw new Scenario.StepFailed("not ready: " + info);
      Thread.sleep(200);
    }
  }

  static String produceThroughKill() throws Exception {
    Map<Integer, Long> pids = new HashMap<>();
    for (String entry : Scenario.env("PETREL_NODE_PIDS").split(",")) {
      String[] parts = entry.split(":");
      pids.put(Integer.parseInt(parts[0]), Long.parseLong(parts[1]));
    }
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    Scenario.secure(p);
    AtomicInteger errors = new AtomicInteger();
    int killed = -1;
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      for (int i = 0; i < RECORDS; i++) {
        if (i == KILL_AFTER) {
          producer.flush();
          int leader = partitions().get(0).leader().id();
          Long pid = pids.get(leader);
          if (pid == null) throw new Scenario.StepFailed("no pid for broker " + leader);
          ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
          killed = leader;
          Scenario.log("SIGKILLed broker " + leader + " (pid " + pid + "), the leader of partition 0");
        }
        String key = "k" + i;
        int index = i;
        producer.send(new ProducerRecord<>(topic, key, "v" + i), (md, e) -> {
          if (e == null) acked.put("v" + index, md.partition());
          else errors.incrementAndGet();
        });
      }
      producer.flush();
    }
    if (errors.get() > 0) throw new Scenario.StepFailed(errors.get() + " records not acknowledged");
    return acked.size() + " of " + RECORDS + " records acknowledged; broker " + killed
        + " (leader of partition 0) SIGKILLed after " + KILL_AFTER;
  }

  static String consumeAll() throws Exception {
    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    Scenario.secure(c);
    List<TopicPartition> all = new ArrayList<>();
    for (int i = 0; i < PARTITIONS; i++) all.add(new TopicPartition(topic, i));
    Map<String, Integer> seen = new HashMap<>();
    int[] last = new int[PARTITIONS];
    Arrays.fill(last, -1);
    List<String> problems = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
      consumer.assign(all);
      consumer.seekToBeginning(all);
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_S);
      while (!seen.keySet().containsAll(acked.keySet()) && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          int index = Integer.parseInt(r.value().substring(1));
          if (seen.put(r.value(), r.partition()) != null) problems.add("duplicate " + r.value());
          if (index < last[r.partition()]) problems.add("out of order in p" + r.partition() + ": " + r.value());
          last[r.partition()] = Math.max(last[r.partition()], index);
        }
      }
    }
    Set<String> missing = new TreeSet<>(acked.keySet());
    missing.removeAll(seen.keySet());
    if (!missing.isEmpty()) problems.add(missing.size() + " acknowledged records lost, e.g. " + missing.iterator().next());
    if (!problems.isEmpty()) throw new Scenario.StepFailed(String.join("; ", problems.subList(0, Math.min(5, problems.size()))));
    return seen.size() + " records read, every acknowledged one exactly once, in order per partition";
  }

  static void run(String step, Scenario.Step body) {
    Scenario.log("step " + step + " starting");
    try {
      emit(step, true, body.run());
    } catch (Scenario.StepFailed e) {
      emit(step, false, e.getMessage());
    } catch (Throwable e) {
      Throwable cause = (e instanceof ExecutionException && e.getCause() != null) ? e.getCause() : e;
      e.printStackTrace(System.err);
      emit(step, false, cause.getClass().getName() + ": " + cause.getMessage());
    }
  }

  static void emit(String step, boolean ok, String detail) {
    if (!ok) failed = true;
    System.out.println("{\"step\": " + Scenario.json(step) + ", \"ok\": " + ok + ", \"detail\": " + Scenario.json(detail) + "}");
    System.out.flush();
  }
}
