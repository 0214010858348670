// Interop scenario for franz-go (kgo + kadm) against Petrel.
// Contract: tests/interop/README.md. Step results go to stdout as JSON lines,
// everything else to stderr.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

const (
	partitions   = 3
	perCodec     = 300
	resumeCount  = 50
	consumeLimit = 60 * time.Second
)

var codecs = []struct {
	name  string
	codec kgo.CompressionCodec
}{
	{"none", kgo.NoCompression()},
	{"gzip", kgo.GzipCompression()},
	{"snappy", kgo.SnappyCompression()},
	{"lz4", kgo.Lz4Compression()},
	{"zstd", kgo.ZstdCompression()},
}

var (
	bootstrap string
	topic     string
	group     string
	failed    bool
)

func emit(step string, ok bool, detail string) {
	b, _ := json.Marshal(struct {
		Step   string `json:"step"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	}{step, ok, detail})
	fmt.Println(string(b))
	if !ok {
		failed = true
	}
	logf("step %s ok=%v: %s", step, ok, detail)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[franz-go scenario] "+format+"\n", args...)
}

// baseOpts returns the options every client gets: seed brokers, plus a
// logger on stderr (INTEROP_LOG=debug for debug level; logging changes no
// client behaviour).
func baseOpts() []kgo.Opt {
	level := kgo.LogLevelInfo
	if os.Getenv("INTEROP_LOG") == "debug" {
		level = kgo.LogLevelDebug
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, level, nil)),
	}
	return append(opts, securityOpts()...)
}

// securityOpts are the options for the listener the runner chose: TLS with the broker's
// CA (PETREL_SSL_CA), a client certificate (PETREL_SSL_CERT, PETREL_SSL_KEY), SCRAM
// (PETREL_SASL_*); none on PLAINTEXT. A bad file fails the scenario at once.
func securityOpts() []kgo.Opt {
	ca := os.Getenv("PETREL_SSL_CA")
	if ca == "" {
		return nil
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		logf("reading %s: %v", ca, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	config := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert := os.Getenv("PETREL_SSL_CERT"); cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, os.Getenv("PETREL_SSL_KEY"))
		if err != nil {
			logf("loading the client certificate: %v", err)
			os.Exit(2)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	opts := []kgo.Opt{kgo.DialTLSConfig(config)}
	if user := os.Getenv("PETREL_SASL_USER"); user != "" {
		auth := scram.Auth{User: user, Pass: os.Getenv("PETREL_SASL_PASSWORD")}
		switch os.Getenv("PETREL_SASL_MECHANISM") {
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(auth.AsSha256Mechanism()))
		default:
			opts = append(opts, kgo.SASL(auth.AsSha512Mechanism()))
		}
	}
	return opts
}

func newAdmin() (*kadm.Client, *kgo.Client, error) {
	cl, err := kgo.NewClient(baseOpts()...)
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl, nil
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// ---- record data ----

type want struct {
	key     string
	value   string
	headers [][2]string
	codec   string
	i       int
}

func mainRecord(codec string, i int) want {
	return want{
		key:     fmt.Sprintf("%s-%d", codec, i),
		value:   fmt.Sprintf("%s:%d:%s", codec, i, strings.Repeat("petrel", i%40)),
		headers: [][2]string{{"codec", codec}, {"i", strconv.Itoa(i)}},
		codec:   codec,
		i:       i,
	}
}

func resumeRecord(i int) want {
	return want{
		key:     fmt.Sprintf("resume-%d", i),
		value:   fmt.Sprintf("resume:%d", i),
		headers: [][2]string{{"codec", "resume"}, {"i", strconv.Itoa(i)}},
		codec:   "resume",
		i:       i,
	}
}

func (w want) record() *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: []byte(w.key), Value: []byte(w.value)}
	for _, h := range w.headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
	}
	return r
}

// produce sends all records with a fresh producer client and waits for
// every acknowledgement.
func produce(extra []kgo.Opt, recs []want) error {
	cl, err := kgo.NewClient(append(baseOpts(), extra...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := ctxTimeout(60 * time.Second)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	for _, w := range recs {
		wg.Add(1)
		key := w.key
		cl.Produce(ctx, w.record(), func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("%s: %v", key, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d sends failed, first: %s", len(errs), len(recs), errs[0])
	}
	return nil
}

// ---- consuming ----

type consumed struct {
	partition int32
	offset    int64
	key       string
	rec       *kgo.Record
}

func newConsumer() (*kgo.Client, error) {
	return kgo.NewClient(append(baseOpts(),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)...)
}

// consume polls until every expected key arrived (or the deadline), then,
// if linger > 0, keeps polling that much longer. Returns everything seen.
func consume(cl *kgo.Client, expected map[string]want, linger time.Duration) ([]consumed, []string) {
	var (
		got      []consumed
		fetchErr []string
		seen     = map[string]bool{}
		missing  = len(expected)
		deadline = time.Now().Add(consumeLimit)
		stopAt   time.Time
	)
	for {
		now := time.Now()
		if !stopAt.IsZero() && now.After(stopAt) {
			break
		}
		if stopAt.IsZero() && now.After(deadline) {
			break
		}
		until := deadline
		if !stopAt.IsZero() {
			until = stopAt
		}
		ctx, cancel := context.WithDeadline(context.Background(), until)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.IsClientClosed() {
			fetchErr = append(fetchErr, "client closed")
			break
		}
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			logf("fetch error %s[%d]: %v", t, p, err)
			fetchErr = append(fetchErr, fmt.Sprintf("%s[%d]: %v", t, p, err))
		})
		fs.EachRecord(func(r *kgo.Record) {
			k := string(r.Key)
			got = append(got, consumed{partition: r.Partition, offset: r.Offset, key: k, rec: r})
			if _, ok := expected[k]; ok && !seen[k] {
				seen[k] = true
				missing--
			}
		})
		if missing == 0 && stopAt.IsZero() {
			if linger <= 0 {
				break
			}
			stopAt = time.Now().Add(linger)
		}
	}
	return got, fetchErr
}

// check verifies got against expected exactly: all present, no duplicates,
// no unexpected records, exact key/value/headers, and per partition and
// codec increasing i.
func check(got []consumed, expected map[string]want) []string {
	var problems []string
	seen := map[string]int{}
	type pc struct {
		p int32
		c string
	}
	last := map[pc]int{}
	var unexpected, dups, bad, order []string
	codecAttr := map[string]map[uint8]int{}
	for _, c := range got {
		w, ok := expected[c.key]
		if !ok {
			unexpected = append(unexpected, fmt.Sprintf("%q@p%d/o%d", c.key, c.partition, c.offset))
			continue
		}
		seen[c.key]++
		if seen[c.key] > 1 {
			dups = append(dups, c.key)
			continue
		}
		if string(c.rec.Value) != w.value {
			bad = append(bad, fmt.Sprintf("%s: value %q", c.key, trunc(string(c.rec.Value))))
		}
		var hs [][2]string
		for _, h := range c.rec.Headers {
			hs = append(hs, [2]string{h.Key, string(h.Value)})
		}
		if fmt.Sprint(hs) != fmt.Sprint(w.headers) {
			bad = append(bad, fmt.Sprintf("%s: headers %v", c.key, hs))
		}
		k := pc{c.partition, w.codec}
		if prev, ok := last[k]; ok && w.i <= prev {
			order = append(order, fmt.Sprintf("p%d: %s after %s-%d", c.partition, c.key, w.codec, prev))
		}
		last[k] = w.i
		if codecAttr[w.codec] == nil {
			codecAttr[w.codec] = map[uint8]int{}
		}
		codecAttr[w.codec][c.rec.Attrs.CompressionType()]++
	}
	// Informational only: which compression attribute the fetched batches carried.
	logf("fetched batch compression attribute per codec (0 none,1 gzip,2 snappy,3 lz4,4 zstd): %v", codecAttr)
	var miss []string
	for k := range expected {
		if seen[k] == 0 {
			miss = append(miss, k)
		}
	}
	sort.Strings(miss)
	if len(miss) > 0 {
		problems = append(problems, fmt.Sprintf("missing %d records: %s", len(miss), list(miss)))
	}
	if len(dups) > 0 {
		problems = append(problems, fmt.Sprintf("%d duplicates: %s", len(dups), list(dups)))
	}
	if len(unexpected) > 0 {
		problems = append(problems, fmt.Sprintf("%d unexpected records: %s", len(unexpected), list(unexpected)))
	}
	if len(bad) > 0 {
		problems = append(problems, fmt.Sprintf("%d records with wrong data: %s", len(bad), list(bad)))
	}
	if len(order) > 0 {
		problems = append(problems, fmt.Sprintf("%d out of order: %s", len(order), list(order)))
	}
	return problems
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func list(xs []string) string {
	if len(xs) > 10 {
		return strings.Join(xs[:10], ", ") + ", ..."
	}
	return strings.Join(xs, ", ")
}

// ---- steps ----

func stepCreateTopic(adm *kadm.Client) bool {
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		emit("create_topic", false, fmt.Sprintf("CreateTopics %s: %v", topic, err))
		return false
	}
	r := resp[topic]
	if r.NumPartitions != -1 && r.NumPartitions != partitions {
		emit("create_topic", false, fmt.Sprintf("%s created with %d partitions, want %d", topic, r.NumPartitions, partitions))
		return false
	}
	emit("create_topic", true, fmt.Sprintf("%s, %d partitions", topic, partitions))
	return true
}

func stepProduce(idx int) {
	c := codecs[idx]
	step := "produce_" + c.name
	recs := make([]want, perCodec)
	for i := range recs {
		recs[i] = mainRecord(c.name, i)
	}
	if err := produce([]kgo.Opt{kgo.ProducerBatchCompression(c.codec)}, recs); err != nil {
		emit(step, false, err.Error())
		return
	}
	emit(step, true, fmt.Sprintf("%d records acknowledged", perCodec))
}

func stepConsumeGroup(produced []string) bool {
	expected := map[string]want{}
	for _, c := range produced {
		for i := 0; i < perCodec; i++ {
			w := mainRecord(c, i)
			expected[w.key] = w
		}
	}
	got, problems := consumeCheckCommit(expected, 0)
	if len(problems) > 0 {
		emit("consume_group", false, strings.Join(problems, "; "))
		return false
	}
	emit("consume_group", true, fmt.Sprintf("%d records (%s) checked, committed", got, strings.Join(produced, ", ")))
	return true
}

// consumeCheckCommit reads with a new group consumer until everything expected arrived (and
// `extra` longer, to catch anything unexpected), checks it exactly, and commits. It returns
// how many records arrived and every problem found.
func consumeCheckCommit(expected map[string]want, extra time.Duration) (int, []string) {
	cl, err := newConsumer()
	if err != nil {
		return 0, []string{"new consumer: " + err.Error()}
	}
	defer cl.Close()
	got, fetchErrs := consume(cl, expected, extra)
	problems := check(got, expected)
	if len(fetchErrs) > 0 {
		problems = append(problems, fmt.Sprintf("fetch errors: %s", list(fetchErrs)))
	}
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		problems = append(problems, "commit: "+err.Error())
	}
	return len(got), problems
}

func stepResume() bool {
	recs := make([]want, resumeCount)
	expected := map[string]want{}
	for i := range recs {
		recs[i] = resumeRecord(i)
		expected[recs[i].key] = recs[i]
	}
	if err := produce([]kgo.Opt{kgo.ProducerBatchCompression(kgo.NoCompression())}, recs); err != nil {
		emit("resume_from_commit", false, "producing resume records: "+err.Error())
		return false
	}
	got, problems := consumeCheckCommit(expected, 2*time.Second)
	if len(problems) > 0 {
		emit("resume_from_commit", false, strings.Join(problems, "; "))
		return false
	}
	emit("resume_from_commit", true, fmt.Sprintf("exactly the %d new records, committed", got))
	return true
}

func stepListTopics(adm *kadm.Client) {
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		emit("list_topics", false, "ListTopics: "+err.Error())
		return
	}
	if !tds.Has(topic) {
		emit("list_topics", false, fmt.Sprintf("%s not listed; got %v", topic, tds.Names()))
		return
	}
	emit("list_topics", true, fmt.Sprintf("%s listed among %d topics", topic, len(tds)))
}

func stepDescribeTopic(adm *kadm.Client) {
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		emit("describe_topic", false, "Metadata: "+err.Error())
		return
	}
	td, ok := md.Topics[topic]
	if !ok {
		emit("describe_topic", false, topic+" missing from metadata response")
		return
	}
	if td.Err != nil {
		emit("describe_topic", false, fmt.Sprintf("%s: %v", topic, td.Err))
		return
	}
	var problems []string
	if len(td.Partitions) != partitions {
		problems = append(problems, fmt.Sprintf("%d partitions, want %d", len(td.Partitions), partitions))
	}
	for p := int32(0); p < partitions; p++ {
		pd, ok := td.Partitions[p]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("partition %d missing", p))
		case pd.Err != nil:
			problems = append(problems, fmt.Sprintf("partition %d: %v", p, pd.Err))
		case pd.Leader != 0:
			problems = append(problems, fmt.Sprintf("partition %d leader %d, want 0", p, pd.Leader))
		}
	}
	if len(problems) > 0 {
		emit("describe_topic", false, strings.Join(problems, "; "))
		return
	}
	emit("describe_topic", true, fmt.Sprintf("%s: %d partitions, leader 0 each", topic, partitions))
}

func stepDescribeGroup(adm *kadm.Client, wantSum int64) {
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	var problems []string
	lgs, err := adm.ListGroups(ctx)
	if err != nil {
		problems = append(problems, "ListGroups: "+err.Error())
	} else if _, ok := lgs[group]; !ok {
		problems = append(problems, fmt.Sprintf("ListGroups does not list %s (got %v)", group, lgs.Groups()))
	}
	dgs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		problems = append(problems, "DescribeGroups: "+err.Error())
	} else if dg, ok := dgs[group]; !ok {
		problems = append(problems, "DescribeGroups: group missing from response")
	} else if dg.Err != nil {
		problems = append(problems, fmt.Sprintf("DescribeGroups: %v %s", dg.Err, dg.ErrMessage))
	} else {
		if dg.State != "Empty" {
			problems = append(problems, fmt.Sprintf("state %q, want Empty", dg.State))
		}
		if dg.ProtocolType != "consumer" {
			problems = append(problems, fmt.Sprintf("protocol type %q, want consumer", dg.ProtocolType))
		}
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = offs.Error()
	}
	var sum int64
	if err != nil {
		problems = append(problems, "FetchOffsets: "+err.Error())
	} else {
		var parts []string
		for p := int32(0); p < partitions; p++ {
			o, ok := offs.Lookup(topic, p)
			if !ok {
				parts = append(parts, fmt.Sprintf("p%d=none", p))
				continue
			}
			sum += o.At
			parts = append(parts, fmt.Sprintf("p%d=%d", p, o.At))
		}
		if sum != wantSum {
			problems = append(problems, fmt.Sprintf("committed offsets %s sum to %d, want %d", strings.Join(parts, " "), sum, wantSum))
		}
	}
	if len(problems) > 0 {
		emit("describe_group", false, strings.Join(problems, "; "))
		return
	}
	emit("describe_group", true, fmt.Sprintf("%s listed, state Empty, protocol type consumer, committed offsets sum %d", group, sum))
}

func stepDeleteTopic(adm *kadm.Client) {
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	resp, err := adm.DeleteTopics(ctx, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		emit("delete_topic", false, "DeleteTopics: "+err.Error())
		return
	}
	// kadm answers ListTopics from kgo's client-side metadata cache
	// (MetadataMinAge, 5 s by default), which DeleteTopics does not
	// invalidate, so the check asks the broker through a fresh client.
	fresh, freshCl, err := newAdmin()
	if err != nil {
		emit("delete_topic", false, "admin client: "+err.Error())
		return
	}
	defer freshCl.Close()
	tds, err := fresh.ListTopics(ctx)
	if err != nil {
		emit("delete_topic", false, "ListTopics after delete: "+err.Error())
		return
	}
	if tds.Has(topic) {
		emit("delete_topic", false, topic+" still listed after DeleteTopics succeeded")
		return
	}
	emit("delete_topic", true, topic+" deleted, no longer listed")
}

func main() {
	bootstrap = os.Getenv("PETREL_BOOTSTRAP")
	client := os.Getenv("INTEROP_CLIENT")
	if bootstrap == "" {
		logf("PETREL_BOOTSTRAP is not set")
		os.Exit(2)
	}
	if client == "" {
		client = "franz-go"
	}
	if len(os.Args) > 1 && os.Args[1] == "cluster" {
		clusterMain()
		return
	}
	topic = "interop-" + client
	group = topic + "-group"

	adm, admCl, err := newAdmin()
	if err != nil {
		logf("admin client: %v", err)
		os.Exit(2)
	}
	defer admCl.Close()

	if !stepCreateTopic(adm) {
		for _, s := range []string{"produce_none", "produce_gzip", "produce_snappy", "produce_lz4", "produce_zstd",
			"consume_group", "resume_from_commit", "list_topics", "describe_topic", "describe_group", "delete_topic"} {
			emit(s, false, "not run: create_topic failed")
		}
		os.Exit(1)
	}

	var produced []string
	for i := range codecs {
		before := failed
		failed = false
		stepProduce(i)
		if !failed {
			produced = append(produced, codecs[i].name)
		}
		failed = failed || before
	}

	consumedOK := stepConsumeGroup(produced)
	if consumedOK {
		stepResume()
	} else {
		emit("resume_from_commit", false, "not run: consume_group failed")
	}
	stepListTopics(adm)
	stepDescribeTopic(adm)
	stepDescribeGroup(adm, int64(len(produced)*perCodec+resumeCount))
	stepDeleteTopic(adm)

	if failed {
		os.Exit(1)
	}
}
