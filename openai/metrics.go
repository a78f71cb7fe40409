package openai

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parrot-llm/parrot/runtime/engine"
)

// Metric names follow vLLM's (docs/design/metrics.md there) under our own
// prefix, each labelled with the served model.
const metricPrefix = "parrot:"

// Names of the queue gauges, for deployment manifests (an autoscaler's
// metric) and tests.
const (
	MetricRequestsRunning = metricPrefix + "num_requests_running"
	MetricRequestsWaiting = metricPrefix + "num_requests_waiting"
	MetricKVCacheUsage    = metricPrefix + "kv_cache_usage_perc"
	MetricPreemptions     = metricPrefix + "num_preemptions_total"
	MetricPrefixQueries   = metricPrefix + "prefix_cache_queries_total"
	MetricPrefixHits      = metricPrefix + "prefix_cache_hits_total"
)

// vLLM's names of the same gauges, exported as well under
// MetricsOptions.VLLMCompat: the Gateway API Inference Extension's endpoint
// picker (its model server protocol, docs/proposals/003-model-server-protocol),
// llm-d and AIBrix scrape these to choose a replica. vLLM labels them
// model_name and engine (the engine core's index, "0" with one engine:
// vllm/v1/metrics/loggers.py, PrometheusStatLogger).
const (
	VLLMRequestsRunning = "vllm:num_requests_running"
	VLLMRequestsWaiting = "vllm:num_requests_waiting"
	// VLLMKVCacheUsage is the fraction of the KV pool's blocks held by
	// sequences, 0..1 (cached blocks no sequence holds count as free, as
	// vLLM's BlockPool.get_usage counts them).
	VLLMKVCacheUsage = "vllm:kv_cache_usage_perc"
	// Counters, in tokens for the prefix cache (vLLM's
	// prefix_cache_queries/hits), in sequences for preemptions.
	VLLMPreemptions   = "vllm:num_preemptions_total"
	VLLMPrefixQueries = "vllm:prefix_cache_queries_total"
	VLLMPrefixHits    = "vllm:prefix_cache_hits_total"
)

// vllmEngine is the engine label of the vLLM-named series: one engine.
const vllmEngine = "0"

// MetricsOptions choose the series exported besides the parrot: ones.
type MetricsOptions struct {
	// VLLMCompat also exports the queue, KV cache and prefix-cache series
	// under vLLM's names (vllm:num_requests_running, ...), from the same
	// scheduler events.
	VLLMCompat bool
}

// Metrics are the Prometheus collectors of the engines' scheduler events.
type Metrics struct {
	queue            *queueCollector          // running, waiting and KV usage, per model
	preemptions      []*prometheus.CounterVec // ours, and vLLM's twin with VLLMCompat
	prefixQueries    []*prometheus.CounterVec
	prefixHits       []*prometheus.CounterVec
	promptTokens     *prometheus.CounterVec
	generationTokens *prometheus.CounterVec
	requestSuccess   *prometheus.CounterVec // by finished_reason
	ttft             *prometheus.HistogramVec
	interToken       *prometheus.HistogramVec
	e2e              *prometheus.HistogramVec
	queueTime        *prometheus.HistogramVec
	promptLen        *prometheus.HistogramVec
	generationLen    *prometheus.HistogramVec
}

// Bucket bounds in seconds (latencies) and tokens (lengths).
var (
	ttftBuckets       = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160}
	interTokenBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10}
	e2eBuckets        = []float64{0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960}
	lengthBuckets     = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000}
)

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer, opts MetricsOptions) (*Metrics, error) {
	model := []string{"model_name"}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricPrefix + name, Help: help, Buckets: buckets}, model)
	}
	m := &Metrics{
		queue: newQueueCollector(opts.VLLMCompat),
		promptTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + "prompt_tokens_total",
			Help: "Prompt tokens processed, of finished requests."}, model),
		generationTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + "generation_tokens_total",
			Help: "Tokens generated."}, model),
		requestSuccess: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + "request_success_total",
			Help: "Finished requests, by finish reason (stop, length, abort: cancelled or failed)."},
			[]string{"model_name", "finished_reason"}),
		ttft:          hist("time_to_first_token_seconds", "Time from arrival to the first generated token.", ttftBuckets),
		interToken:    hist("inter_token_latency_seconds", "Time between two generated tokens of a request.", interTokenBuckets),
		e2e:           hist("e2e_request_latency_seconds", "Time from arrival to the end of a request.", e2eBuckets),
		queueTime:     hist("request_queue_time_seconds", "Time a request waited in the queue before it was scheduled.", e2eBuckets),
		promptLen:     hist("request_prompt_tokens", "Prompt length of finished requests.", lengthBuckets),
		generationLen: hist("request_generation_tokens", "Generated tokens of finished requests.", lengthBuckets),
	}
	collectors := []prometheus.Collector{m.queue, m.promptTokens, m.generationTokens,
		m.requestSuccess, m.ttft, m.interToken, m.e2e, m.queueTime, m.promptLen, m.generationLen}
	counter := func(ours, vllm, help string) []*prometheus.CounterVec {
		cs := []*prometheus.CounterVec{prometheus.NewCounterVec(prometheus.CounterOpts{Name: ours, Help: help}, model)}
		if opts.VLLMCompat {
			cs = append(cs, prometheus.NewCounterVec(prometheus.CounterOpts{Name: vllm,
				Help: help + " (vLLM's name; the same value as " + ours + ")"}, []string{"model_name", "engine"}))
		}
		for _, c := range cs {
			collectors = append(collectors, c)
		}
		return cs
	}
	m.preemptions = counter(MetricPreemptions, VLLMPreemptions, "Running sequences preempted for lack of KV cache blocks (recomputed when resumed).")
	m.prefixQueries = counter(MetricPrefixQueries, VLLMPrefixQueries, "Prompt tokens looked up in the prefix cache.")
	m.prefixHits = counter(MetricPrefixHits, VLLMPrefixHits, "Prompt tokens found in the prefix cache (their KV not recomputed).")
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// twins resolves a counter and its vLLM-named twin for one model.
func twins(cs []*prometheus.CounterVec, model string) []prometheus.Counter {
	out := []prometheus.Counter{cs[0].WithLabelValues(model)}
	if len(cs) > 1 {
		out = append(out, cs[1].WithLabelValues(model, vllmEngine))
	}
	return out
}

// Observer returns the engine.Observer for the engine serving model.
func (m *Metrics) Observer(model string) engine.Observer {
	return &modelObserver{
		queue:            m.queue.add(model),
		preemptions:      twins(m.preemptions, model),
		prefixQueries:    twins(m.prefixQueries, model),
		prefixHits:       twins(m.prefixHits, model),
		promptTokens:     m.promptTokens.WithLabelValues(model),
		generationTokens: m.generationTokens.WithLabelValues(model),
		success:          m.requestSuccess.MustCurryWith(prometheus.Labels{"model_name": model}),
		ttft:             m.ttft.WithLabelValues(model),
		interToken:       m.interToken.WithLabelValues(model),
		e2e:              m.e2e.WithLabelValues(model),
		queueTime:        m.queueTime.WithLabelValues(model),
		promptLen:        m.promptLen.WithLabelValues(model),
		generationLen:    m.generationLen.WithLabelValues(model),
	}
}

// modelObserver holds one model's series, resolved once.
type modelObserver struct {
	queue                          *queueCounts
	preemptions                    []prometheus.Counter
	prefixQueries, prefixHits      []prometheus.Counter
	promptTokens, generationTokens prometheus.Counter
	success                        *prometheus.CounterVec
	ttft, interToken, e2e          prometheus.Observer
	queueTime                      prometheus.Observer
	promptLen, generationLen       prometheus.Observer
}

func (o *modelObserver) Queue(running, waiting int, kvUsage float64) {
	o.queue.mu.Lock()
	o.queue.running, o.queue.waiting, o.queue.kvUsage = running, waiting, kvUsage
	o.queue.mu.Unlock()
}

func (o *modelObserver) Preempted() {
	for _, c := range o.preemptions {
		c.Inc()
	}
}

func (o *modelObserver) PrefixCache(queried, hit int) {
	for i := range o.prefixQueries {
		o.prefixQueries[i].Add(float64(queried))
		o.prefixHits[i].Add(float64(hit))
	}
}

func (o *modelObserver) Token(first bool, sinceLast time.Duration) {
	o.generationTokens.Inc()
	if !first {
		o.interToken.Observe(sinceLast.Seconds())
	}
}

func (o *modelObserver) Finished(promptTokens, completionTokens int, t engine.Timing, reason string) {
	if reason == "" {
		reason = "abort"
	}
	o.success.WithLabelValues(reason).Inc()
	o.promptTokens.Add(float64(promptTokens))
	o.promptLen.Observe(float64(promptTokens))
	o.generationLen.Observe(float64(completionTokens))
	if !t.FirstToken.IsZero() {
		o.ttft.Observe(t.FirstToken.Sub(t.Queued).Seconds())
	}
	o.e2e.Observe(t.Finished.Sub(t.Queued).Seconds())
	if !t.Scheduled.IsZero() {
		o.queueTime.Observe(t.Scheduled.Sub(t.Queued).Seconds())
	}
}

// queueCollector exports each model's running and waiting counts under our
// names and, with VLLMCompat, vLLM's, from one read per model and scrape:
// the twins never disagree within a scrape, as two gauges set one after the
// other could.
type queueCollector struct {
	running, waiting, kvUsage             *prometheus.Desc // model_name
	vllmRunning, vllmWaiting, vllmKVUsage *prometheus.Desc // model_name, engine; nil without VLLMCompat

	mu     sync.Mutex
	models map[string]*queueCounts
}

// queueCounts are one model's last reported queue.
type queueCounts struct {
	mu               sync.Mutex
	running, waiting int
	kvUsage          float64
}

func newQueueCollector(vllm bool) *queueCollector {
	model := []string{"model_name"}
	c := &queueCollector{
		running: prometheus.NewDesc(MetricRequestsRunning, "Number of requests being decoded (holding a KV cache).", model, nil),
		waiting: prometheus.NewDesc(MetricRequestsWaiting, "Number of requests queued for a decode slot.", model, nil),
		kvUsage: prometheus.NewDesc(MetricKVCacheUsage, "Fraction of the KV cache pool's blocks held by sequences (0 to 1).", model, nil),
		models:  map[string]*queueCounts{},
	}
	if vllm {
		labels := []string{"model_name", "engine"}
		c.vllmRunning = prometheus.NewDesc(VLLMRequestsRunning,
			"Number of requests in model execution batches (vLLM's name; the same value as "+MetricRequestsRunning+").", labels, nil)
		c.vllmWaiting = prometheus.NewDesc(VLLMRequestsWaiting,
			"Number of requests waiting to be processed (vLLM's name; the same value as "+MetricRequestsWaiting+").", labels, nil)
		c.vllmKVUsage = prometheus.NewDesc(VLLMKVCacheUsage,
			"KV-cache usage, 1 means 100 percent usage (vLLM's name; the same value as "+MetricKVCacheUsage+").", labels, nil)
	}
	return c
}

// add returns model's counts (0 and 0 until its engine reports).
func (c *queueCollector) add(model string) *queueCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.models[model]
	if q == nil {
		q = &queueCounts{}
		c.models[model] = q
	}
	return q
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.running, c.waiting, c.kvUsage, c.vllmRunning, c.vllmWaiting, c.vllmKVUsage} {
		if d != nil {
			ch <- d
		}
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for model, q := range c.models {
		q.mu.Lock()
		running, waiting, usage := float64(q.running), float64(q.waiting), q.kvUsage
		q.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, running, model)
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, waiting, model)
		ch <- prometheus.MustNewConstMetric(c.kvUsage, prometheus.GaugeValue, usage, model)
		if c.vllmRunning != nil {
			ch <- prometheus.MustNewConstMetric(c.vllmRunning, prometheus.GaugeValue, running, model, vllmEngine)
			ch <- prometheus.MustNewConstMetric(c.vllmWaiting, prometheus.GaugeValue, waiting, model, vllmEngine)
			ch <- prometheus.MustNewConstMetric(c.vllmKVUsage, prometheus.GaugeValue, usage, model, vllmEngine)
		}
	}
}
