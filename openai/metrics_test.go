package openai

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/parrot-llm/parrot/adapters"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// scrape GETs /metrics from base as a Prometheus server would and parses
// the text exposition.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.LegacyValidation) // colons are legal in legacy names
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// gaugeSeries returns the family's series (labels and values), checking it
// is a gauge.
func gaugeSeries(t *testing.T, families map[string]*dto.MetricFamily, name string) []*dto.Metric {
	t.Helper()
	f := families[name]
	if f == nil {
		t.Fatalf("%s is not in the scrape", name)
	}
	if f.GetType() != dto.MetricType_GAUGE {
		t.Fatalf("%s is a %v, want a gauge", name, f.GetType())
	}
	return f.GetMetric()
}

// queueGauges checks the vLLM-named queue gauges against their parrot:
// twins: one series each, labelled exactly model_name and engine="0" (the
// twins: model_name), the same non-negative whole value. It returns the
// running and waiting values.
func queueGauges(t *testing.T, families map[string]*dto.MetricFamily, served string) (running, waiting float64) {
	t.Helper()
	var vals [2]float64
	for i, pair := range [][2]string{{VLLMRequestsRunning, MetricRequestsRunning}, {VLLMRequestsWaiting, MetricRequestsWaiting}} {
		vllm, ours := gaugeSeries(t, families, pair[0]), gaugeSeries(t, families, pair[1])
		if len(vllm) != 1 || len(ours) != 1 {
			t.Fatalf("%s has %d series and %s %d, want one each (one served model)", pair[0], len(vllm), pair[1], len(ours))
		}
		if got, want := labelsOf(vllm[0]), map[string]string{"model_name": served, "engine": "0"}; !sameLabels(got, want) {
			t.Errorf("%s labels %v, want %v (vLLM's)", pair[0], got, want)
		}
		if got := labelsOf(ours[0]); !sameLabels(got, map[string]string{"model_name": served}) {
			t.Errorf("%s labels %v", pair[1], got)
		}
		v := vllm[0].GetGauge().GetValue()
		if v < 0 || v != math.Trunc(v) {
			t.Errorf("%s = %v, want a count", pair[0], v)
		}
		if w := ours[0].GetGauge().GetValue(); w != v {
			t.Errorf("%s = %v but %s = %v: the twins must agree", pair[0], v, pair[1], w)
		}
		vals[i] = v
	}
	return vals[0], vals[1]
}

// kvCacheUsage checks vllm:kv_cache_usage_perc against its parrot: twin:
// one series each with vLLM's labels, the same value in [0, 1]; and that
// the preemption and prefix-cache counters are served under both names.
// It returns the usage.
func kvCacheUsage(t *testing.T, families map[string]*dto.MetricFamily, served string) float64 {
	t.Helper()
	vllm, ours := gaugeSeries(t, families, VLLMKVCacheUsage), gaugeSeries(t, families, MetricKVCacheUsage)
	if len(vllm) != 1 || len(ours) != 1 {
		t.Fatalf("%s has %d series and %s %d, want one each", VLLMKVCacheUsage, len(vllm), MetricKVCacheUsage, len(ours))
	}
	if got, want := labelsOf(vllm[0]), map[string]string{"model_name": served, "engine": "0"}; !sameLabels(got, want) {
		t.Errorf("%s labels %v, want %v (vLLM's)", VLLMKVCacheUsage, got, want)
	}
	v := vllm[0].GetGauge().GetValue()
	if !(v >= 0 && v <= 1) {
		t.Errorf("%s = %v, want a fraction in [0, 1]", VLLMKVCacheUsage, v)
	}
	if w := ours[0].GetGauge().GetValue(); w != v {
		t.Errorf("%s = %v but %s = %v: the twins must agree", VLLMKVCacheUsage, v, MetricKVCacheUsage, w)
	}
	for _, pair := range [][2]string{{VLLMPreemptions, MetricPreemptions}, {VLLMPrefixQueries, MetricPrefixQueries}, {VLLMPrefixHits, MetricPrefixHits}} {
		for _, name := range pair {
			f := families[name]
			if f == nil || f.GetType() != dto.MetricType_COUNTER || len(f.GetMetric()) != 1 {
				t.Fatalf("%s: want one counter series, got %v", name, f)
			}
		}
		if a, b := families[pair[0]].GetMetric()[0].GetCounter().GetValue(), families[pair[1]].GetMetric()[0].GetCounter().GetValue(); a != b || a < 0 {
			t.Errorf("%s = %v, %s = %v", pair[0], a, pair[1], b)
		}
	}
	return v
}

// stalledStream sends a streaming completion on its own connection and
// never reads the answer: with small socket buffers the server's writes
// stall after a few events, so the request stays running (holding its
// adapter slot, if any) until the connection is closed.
func stalledStream(t *testing.T, addr, model string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	body := fmt.Sprintf(`{"model": %q, "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true, "stream": true}`, model)
	fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return c
}

// The vLLM-named queue gauges a gateway scrapes are served next to ours,
// with vLLM's labels, and move with the scheduler: idle 0/0, one running and
// one queued behind it with a single decode slot, 1/0 when the queued client
// leaves, 0/0 when the running one does. vllm:kv_cache_usage_perc is 0
// when idle, above 0 while a stream holds KV blocks, 0 again when it ends.
func TestVLLMQueueGaugesOnScrape(t *testing.T) {
	s := newTestServer(t, serverConfig{sendBuffer: 4096, engine: engine.Options{MaxRunning: 1}})
	// The first name served is the model_name label, as in vLLM.
	served := s.names[0]
	families := scrape(t, s.ts.URL)
	if r, w := queueGauges(t, families, served); r != 0 || w != 0 {
		t.Errorf("idle server: running %v, waiting %v", r, w)
	}
	if u := kvCacheUsage(t, families, served); u != 0 {
		t.Errorf("idle server: KV cache usage %v", u)
	}

	a := stalledStream(t, s.ts.Listener.Addr().String(), "stories")
	waitFor(t, "the first stream to run", func() bool {
		r, _ := queueGauges(t, scrape(t, s.ts.URL), served)
		return r == 1
	})
	b := stalledStream(t, s.ts.Listener.Addr().String(), "stories-alias") // an alias: the same engine and label
	waitFor(t, "the second stream to queue behind the first", func() bool {
		r, w := queueGauges(t, scrape(t, s.ts.URL), served)
		return r == 1 && w == 1
	})
	if u := kvCacheUsage(t, scrape(t, s.ts.URL), served); u <= 0 {
		t.Errorf("a running stream holds KV blocks, but the usage is %v", u)
	}
	// The queued client gives up first: it leaves the queue. (Closing the
	// running one first would leave the queued request stranded on an idle
	// engine until the next Submit, a scheduler bug reported separately.)
	b.Close()
	waitFor(t, "the queued stream to leave the queue", func() bool {
		r, w := queueGauges(t, scrape(t, s.ts.URL), served)
		return r == 1 && w == 0
	})
	a.Close()
	waitFor(t, "both streams to end and free their blocks", func() bool {
		f := scrape(t, s.ts.URL)
		r, w := queueGauges(t, f, served)
		return r == 0 && w == 0 && kvCacheUsage(t, f, served) == 0
	})
}

// With --metrics-compat none the vLLM names are not served; ours are.
func TestNoVLLMSeriesWithoutCompat(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, MetricsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Observer("stories").Queue(0, 0, 0)
	srv := New(Options{Gatherer: reg, Logger: slog.New(slog.NewTextHandler(&syncWriter{}, nil))})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	families := scrape(t, ts.URL)
	for name := range families {
		if strings.HasPrefix(name, "vllm:") {
			t.Errorf("%s is served without VLLMCompat", name)
		}
	}
	for _, name := range []string{MetricRequestsRunning, MetricRequestsWaiting} {
		if families[name] == nil {
			t.Errorf("%s is missing", name)
		}
	}
}

// newLoRAMetricsServer serves stories260K with two adapters and one slot, its
// engine and pool reporting to a registry served at /metrics, as cmd/serve
// wires them with --metrics-compat vllm.
func newLoRAMetricsServer(t *testing.T) *httptest.Server {
	t.Helper()
	backend := cpu.New(1)
	t.Cleanup(backend.Close)
	loaded, err := llama.Load(storiesDir, llama.LoadOptions{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	saveRandomAdapter(t, loaded.Model, filepath.Join(dir, "pirate-lora"), 1)
	saveRandomAdapter(t, loaded.Model, filepath.Join(dir, "captain-lora"), 2)
	reg, err := adapters.NewRegistry(dir, "stories")
	if err != nil {
		t.Fatal(err)
	}
	w := adapters.Watch(reg, adapters.WatchOptions{}) // the first scan registers the two adapters
	t.Cleanup(func() { w.Close() })
	prom := prometheus.NewRegistry()
	am := adapters.NewMetrics(adapters.MetricsOptions{VLLMCompat: true})
	if err := am.Register(prom); err != nil {
		t.Fatal(err)
	}
	pool, err := adapters.NewPool(loaded.Model, 1, 16, 0, reg, adapters.PoolOptions{Metrics: am, MaxWait: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	om, err := NewMetrics(prom, MetricsOptions{VLLMCompat: true})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := engine.NewEngine(loaded, engine.Options{MaxRunning: 4, MaxRunningPerGroup: 4, Observer: om.Observer("stories")})
	if err != nil {
		t.Fatal(err)
	}
	base, err := NewStaticResolver(engine, "stories")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Gatherer: prom, Logger: slog.New(slog.NewTextHandler(&syncWriter{}, nil))})
	srv.SetModels(NewLoRAResolver(base, engine, pool))
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Listener = smallSendBuffers{ts.Listener, 4096}
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = engine.Close(ctx)
	})
	return ts
}

// loraInfo is the one vllm:lora_requests_info series of a scrape, checked
// against its parrot: twin (same labels, same value) and vLLM's label set.
type loraInfo struct {
	maxLoRA, running, waiting string
	updated                   float64 // Unix seconds
}

func scrapeLoRAInfo(t *testing.T, families map[string]*dto.MetricFamily) loraInfo {
	t.Helper()
	vllm := gaugeSeries(t, families, adapters.VLLMLoRARequestsInfo)
	ours := gaugeSeries(t, families, adapters.MetricLoRARequestsInfo)
	if len(vllm) != 1 || len(ours) != 1 {
		t.Fatalf("%s has %d series and %s %d, want exactly one each (the current state)",
			adapters.VLLMLoRARequestsInfo, len(vllm), adapters.MetricLoRARequestsInfo, len(ours))
	}
	l := labelsOf(vllm[0])
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"max_lora", "running_lora_adapters", "waiting_lora_adapters"}; !slices.Equal(keys, want) {
		t.Fatalf("%s labels %v, want vLLM's %v", adapters.VLLMLoRARequestsInfo, keys, want)
	}
	if !sameLabels(l, labelsOf(ours[0])) || vllm[0].GetGauge().GetValue() != ours[0].GetGauge().GetValue() {
		t.Errorf("%s %v and %s %v disagree", adapters.VLLMLoRARequestsInfo, vllm[0], adapters.MetricLoRARequestsInfo, ours[0])
	}
	return loraInfo{l["max_lora"], l["running_lora_adapters"], l["waiting_lora_adapters"], vllm[0].GetGauge().GetValue()}
}

// vllm:lora_requests_info is what the gateway's LoRA affinity reads: one
// series, max_lora the slot count, running_lora_adapters the adapters of
// running requests, waiting_lora_adapters those waiting for a slot, the
// value the time of the last change (non-decreasing, within the test's
// span). Followed through a request holding the only slot, a second adapter
// waiting for it, the hand-over, and idle again; the queue gauges carry the
// base model's served name throughout.
func TestVLLMLoRAInfoOnScrape(t *testing.T) {
	start := float64(time.Now().Add(-time.Second).UnixNano()) / 1e9
	ts := newLoRAMetricsServer(t)
	addr := ts.Listener.Addr().String()
	last := 0.0
	// check waits for the adapters running and waiting, with at least
	// minRunning requests in the engine's running gauge.
	check := func(what, running, waiting string, minRunning float64) func() bool {
		return func() bool {
			families := scrape(t, ts.URL)
			kvCacheUsage(t, families, "stories")
			got := scrapeLoRAInfo(t, families)
			now := float64(time.Now().Add(time.Second).UnixNano()) / 1e9
			if got.updated < start || got.updated > now || got.updated < last {
				t.Fatalf("%s: %s = %v, want a Unix time in [%v, %v], not before the previous %v",
					what, adapters.VLLMLoRARequestsInfo, got.updated, start, now, last)
			}
			last = got.updated
			if got.maxLoRA != "1" {
				t.Fatalf("%s: max_lora %q, want the one slot", what, got.maxLoRA)
			}
			r, _ := queueGauges(t, families, "stories")
			return got.running == running && got.waiting == waiting && r >= minRunning
		}
	}
	waitFor(t, "the idle pool's info", check("idle", "", "", 0))

	a := stalledStream(t, addr, "pirate-lora")
	waitFor(t, "pirate-lora to run", check("one adapter running", "pirate-lora", "", 1))
	b := stalledStream(t, addr, "captain-lora")
	waitFor(t, "captain-lora to wait for the slot", check("one running, one waiting", "pirate-lora", "captain-lora", 1))
	a.Close()
	waitFor(t, "captain-lora to take the slot", check("hand-over", "captain-lora", "", 1))
	b.Close()
	waitFor(t, "the pool to go idle", check("idle again", "", "", 0))
	if r, w := queueGauges(t, scrape(t, ts.URL), "stories"); r != 0 || w != 0 {
		t.Errorf("after both streams: running %v, waiting %v", r, w)
	}
}
