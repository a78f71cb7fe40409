package adapters

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metricPrefix is the server's (openai/metrics.go): vLLM's names with our prefix.
const metricPrefix = "parrot:"

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
	info         *prometheus.GaugeVec // vLLM's lora_requests_info
}

// NewMetrics makes the collectors; Register adds them to a registry.
func NewMetrics() *Metrics {
	name := []string{"lora_name"}
	return &Metrics{
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
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricPrefix + "lora_requests_info",
			Help: "Running stats on LoRA requests (as vLLM's): the value is the time of the last update; " +
				"running_lora_adapters hold a slot, waiting_lora_adapters wait for one."},
			[]string{"max_lora", "running_lora_adapters", "waiting_lora_adapters"}),
	}
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

// requestsInfo publishes the running and waiting adapters (sorted names).
func (m *Metrics) requestsInfo(maxLoRA int, running, waiting []string) {
	if m == nil {
		return
	}
	m.info.Reset()
	m.info.WithLabelValues(strconv.Itoa(maxLoRA), strings.Join(running, ","), strings.Join(waiting, ",")).
		Set(float64(time.Now().UnixNano()) / 1e9)
}
