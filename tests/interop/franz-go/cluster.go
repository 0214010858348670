// Cluster scenario for franz-go against three Petrel brokers (tests/interop/run starts
// them; README.md, "Cluster scenario"): a replicated topic (RF 3, min.insync.replicas 2),
// an idempotent acks=all producer that keeps sending while the leader of partition 0 is
// SIGKILLed, then a consumer that must read every acknowledged record exactly once, in
// order per partition. Run as `franz-go-scenario cluster`.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	clusterRecords   = 3000
	clusterKillAfter = 1000
)

func clusterMain() {
	topic = "interop-franz-go-cluster"
	adm, admCl, err := newAdmin()
	if err != nil {
		logf("admin client: %v", err)
		os.Exit(2)
	}
	defer admCl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	clusterStep("cluster_create_topic", func() (string, error) {
		two := "2"
		resp, err := adm.CreateTopic(ctx, partitions, 3, map[string]*string{"min.insync.replicas": &two}, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s, %d partitions, replication factor 3, min.insync.replicas 2", topic, partitions), nil
	})
	clusterStep("cluster_describe_topic", func() (string, error) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			details, err := adm.ListTopics(ctx, topic)
			if err == nil {
				d := details[topic]
				ready := len(d.Partitions) == partitions
				var b strings.Builder
				for p := int32(0); p < partitions; p++ {
					pd, ok := d.Partitions[p]
					if !ok || pd.Leader < 0 || len(pd.Replicas) != 3 || len(pd.ISR) != 3 {
						ready = false
						break
					}
					fmt.Fprintf(&b, " p%d leader %d isr %d", p, pd.Leader, len(pd.ISR))
				}
				if ready {
					return "every partition led, 3 replicas, 3 in sync:" + b.String(), nil
				}
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("not ready: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	acked := map[string]int32{}
	clusterStep("cluster_produce_through_leader_kill", func() (string, error) {
		pids := map[int32]int{}
		for _, entry := range strings.Split(os.Getenv("PETREL_NODE_PIDS"), ",") {
			parts := strings.Split(entry, ":")
			if len(parts) != 2 {
				return "", fmt.Errorf("bad PETREL_NODE_PIDS entry %q", entry)
			}
			id, _ := strconv.Atoi(parts[0])
			pid, _ := strconv.Atoi(parts[1])
			pids[int32(id)] = pid
		}
		cl, err := kgo.NewClient(append(baseOpts(), kgo.DefaultProduceTopic(topic))...)
		if err != nil {
			return "", err
		}
		defer cl.Close()
		var mu sync.Mutex
		failures := 0
		killed := int32(-1)
		for i := 0; i < clusterRecords; i++ {
			if i == clusterKillAfter {
				if err := cl.Flush(ctx); err != nil {
					return "", err
				}
				details, err := adm.ListTopics(ctx, topic)
				if err != nil {
					return "", err
				}
				killed = details[topic].Partitions[0].Leader
				pid, ok := pids[killed]
				if !ok {
					return "", fmt.Errorf("no pid for broker %d", killed)
				}
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					return "", err
				}
				logf("SIGKILLed broker %d (pid %d), the leader of partition 0", killed, pid)
			}
			value := fmt.Sprintf("v%d", i)
			cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(value)},
				func(r *kgo.Record, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failures++
						return
					}
					acked[string(r.Value)] = r.Partition
				})
		}
		if err := cl.Flush(ctx); err != nil {
			return "", err
		}
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			return "", fmt.Errorf("%d records not acknowledged", failures)
		}
		return fmt.Sprintf("%d of %d records acknowledged; broker %d (leader of partition 0) SIGKILLed after %d",
			len(acked), clusterRecords, killed, clusterKillAfter), nil
	})
	clusterStep("cluster_consume_exactly_once", func() (string, error) {
		offsets := map[int32]kgo.Offset{}
		for p := int32(0); p < partitions; p++ {
			offsets[p] = kgo.NewOffset().AtStart()
		}
		cl, err := kgo.NewClient(append(baseOpts(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))...)
		if err != nil {
			return "", err
		}
		defer cl.Close()
		seen := map[string]int32{}
		last := map[int32]int{}
		var problems []string
		deadline := time.Now().Add(consumeLimit)
		for len(seen) < len(acked) && time.Now().Before(deadline) {
			pollCtx, pollCancel := context.WithTimeout(ctx, time.Second)
			fetches := cl.PollFetches(pollCtx)
			pollCancel()
			fetches.EachRecord(func(r *kgo.Record) {
				value := string(r.Value)
				index, _ := strconv.Atoi(strings.TrimPrefix(value, "v"))
				if _, dup := seen[value]; dup {
					problems = append(problems, "duplicate "+value)
				}
				seen[value] = r.Partition
				if prev, ok := last[r.Partition]; ok && index < prev {
					problems = append(problems, fmt.Sprintf("out of order in p%d: %s", r.Partition, value))
				}
				last[r.Partition] = index
			})
		}
		missing := 0
		for value := range acked {
			if _, ok := seen[value]; !ok {
				missing++
			}
		}
		if missing > 0 {
			problems = append(problems, fmt.Sprintf("%d acknowledged records lost", missing))
		}
		if len(problems) > 0 {
			if len(problems) > 5 {
				problems = problems[:5]
			}
			return "", fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return fmt.Sprintf("%d records read, every acknowledged one exactly once, in order per partition", len(seen)), nil
	})
	if failed {
		os.Exit(1)
	}
}

func clusterStep(step string, body func() (string, error)) {
	logf("step %s starting", step)
	detail, err := body()
	if err != nil {
		emit(step, false, err.Error())
		return
	}
	emit(step, true, detail)
}


