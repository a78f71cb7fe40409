package adapters

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metricPrefix is the server's (openai/metrics.go): vLLM's names with our prefix.
const metricPrefix = "parrot:"

// Names of the LoRA info gauge: ours, and vLLM's, which the Gateway API
// Inference Extension's endpoint picker reads for LoRA affinity (its model
// server protocol, docs/proposals/003-model-server-protocol: the series with
// the latest value is the current one; max_lora, running_lora_adapters and
// waiting_lora_adapters are its labels, the adapter lists comma-separated).
const (
	MetricLoRARequestsInfo = metricPrefix + "lora_requests_info"
	VLLMLoRARequestsInfo   = "vllm:lora_requests_info"
)

// MetricsOptions choose the series exported besides the parrot: ones.
type MetricsOptions struct {
	// VLLMCompat also exports vllm:lora_requests_info, with vLLM's labels
	// and meaning (vllm/v1/metrics/loggers.py, PrometheusStatLogger: a
	// gauge set to the time of the last update), from the same slot state.
	VLLMCompat bool
}

// Metrics are the Prometheus collectors of the adapter pool. A nil
// *Metrics records nothing.
type Metrics struct {
	loaded       prometheus.Gauge
	requests     *prometheus.CounterVec // by lora_name
	promptTokens *prometheus.CounterVec // by lora_name
	genTokens    *prometheus.CounterVec // by lora_name
	loadSeconds  prometheus.Histogram
	loadFailures prometheus.Counter
	evictions    prometheus.Counter
	info         *infoCollector // vLLM's lora_requests_info, under our name and (VLLMCompat) vLLM's
}

// NewMetrics makes the collectors; Register adds them to a registry.
func NewMetrics(opts MetricsOptions) *Metrics {
	name := []string{"lora_name"}
	infoLabels := []string{"max_lora", "running_lora_adapters", "waiting_lora_adapters"} // vLLM's
	m := &Metrics{
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricPrefix + "lora_loaded_adapters",
			Help: "Adapters resident in LoRA slots."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + "lora_requests_total",
			Help: "Requests served with each adapter."}, name),
		promptTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + "lora_prompt_tokens_total",
			Help: "Prompt tokens of finished requests, per adapter."}, name),
		genTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + "lora_generation_tokens_total",
			Help: "Tokens generated, per adapter."}, name),
		loadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricPrefix + "lora_load_seconds",
			Help:    "Time to read, validate and install an adapter into a slot.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}),
		loadFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: metricPrefix + "lora_load_failures_total",
			Help: "Adapter versions refused when loaded (invalid or unreadable files)."}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: metricPrefix + "lora_evictions_total",
			Help: "Idle resident adapters evicted (least recently used) to load another."}),
		info: &infoCollector{desc: prometheus.NewDesc(MetricLoRARequestsInfo,
			"Running stats on LoRA requests (as vLLM's): the value is the time of the last update; "+
				"running_lora_adapters hold a slot, waiting_lora_adapters wait for one.", infoLabels, nil)},
	}
	if opts.VLLMCompat {
		m.info.vllmDesc = prometheus.NewDesc(VLLMLoRARequestsInfo,
			"Running stats on LoRA requests (vLLM's name; the same series as "+MetricLoRARequestsInfo+"): "+
				"the value is the Unix time of the last update; running_lora_adapters are the adapters of running requests, "+
				"waiting_lora_adapters those of requests waiting for a slot, max_lora the slots.", infoLabels, nil)
	}
	return m
}

// Register adds the collectors to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.loaded, m.requests, m.promptTokens, m.genTokens,
		m.loadSeconds, m.loadFailures, m.evictions, m.info} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Request counts one request served with adapter name.
func (m *Metrics) Request(name string) {
	if m != nil {
		m.requests.WithLabelValues(name).Inc()
	}
}

// Tokens counts the tokens of a finished request of adapter name.
func (m *Metrics) Tokens(name string, prompt, generated int) {
	if m != nil {
		m.promptTokens.WithLabelValues(name).Add(float64(prompt))
		m.genTokens.WithLabelValues(name).Add(float64(generated))
	}
}

func (m *Metrics) loadedAdapters(n int) {
	if m != nil {
		m.loaded.Set(float64(n))
	}
}

func (m *Metrics) loadDone(d time.Duration, failed bool) {
	if m == nil {
		return
	}
	if failed {
		m.loadFailures.Inc()
		return
	}
	m.loadSeconds.Observe(d.Seconds())
}

func (m *Metrics) evicted() {
	if m != nil {
		m.evictions.Inc()
	}
}

// requestsInfo publishes the running and waiting adapters (sorted names):
// one series whose labels name them and whose value is the time of this
// update, replacing the previous one.
func (m *Metrics) requestsInfo(maxLoRA int, running, waiting []string) {
	if m == nil {
		return
	}
	m.info.set([3]string{strconv.Itoa(maxLoRA), strings.Join(running, ","), strings.Join(waiting, ",")},
		float64(time.Now().UnixNano())/1e9)
}

// infoCollector holds the current lora_requests_info series and exports it
// under each of its names from one read, so a scrape never sees the state
// between two updates (no series, or twins that disagree).
type infoCollector struct {
	desc, vllmDesc *prometheus.Desc // vllmDesc nil without VLLMCompat

	mu      sync.Mutex
	labels  [3]string // max_lora, running_lora_adapters, waiting_lora_adapters
	updated float64   // Unix seconds; 0 = never set
}

func (c *infoCollector) set(labels [3]string, updated float64) {
	c.mu.Lock()
	c.labels, c.updated = labels, updated
	c.mu.Unlock()
}

func (c *infoCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	if c.vllmDesc != nil {
		ch <- c.vllmDesc
	}
}

func (c *infoCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	labels, updated := c.labels, c.updated
	c.mu.Unlock()
	if updated == 0 {
		return
	}
	for _, d := range []*prometheus.Desc{c.desc, c.vllmDesc} {
		if d != nil {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, updated, labels[:]...)
		}
	}
}
