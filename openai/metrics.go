package openai

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parrot-llm/parrot/runtime"
)

// Metric names follow vLLM's (docs/design/metrics.md there) under our own
// prefix, each labelled with the served model.
const metricPrefix = "parrot:"

// Metrics are the Prometheus collectors of the engines' scheduler events.
type Metrics struct {
	running, waiting *prometheus.GaugeVec
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
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	model := []string{"model_name"}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricPrefix + name, Help: help, Buckets: buckets}, model)
	}
	m := &Metrics{
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricPrefix + "num_requests_running",
			Help: "Number of requests being decoded (holding a KV cache)."}, model),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricPrefix + "num_requests_waiting",
			Help: "Number of requests queued for a decode slot."}, model),
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
	for _, c := range []prometheus.Collector{m.running, m.waiting, m.promptTokens, m.generationTokens,
		m.requestSuccess, m.ttft, m.interToken, m.e2e, m.queueTime, m.promptLen, m.generationLen} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observer returns the runtime.Observer for the engine serving model.
func (m *Metrics) Observer(model string) runtime.Observer {
	return &modelObserver{
		running:          m.running.WithLabelValues(model),
		waiting:          m.waiting.WithLabelValues(model),
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
	running, waiting               prometheus.Gauge
	promptTokens, generationTokens prometheus.Counter
	success                        *prometheus.CounterVec
	ttft, interToken, e2e          prometheus.Observer
	queueTime                      prometheus.Observer
	promptLen, generationLen       prometheus.Observer
}

func (o *modelObserver) Queue(running, waiting int) {
	o.running.Set(float64(running))
	o.waiting.Set(float64(waiting))
}

func (o *modelObserver) Token(first bool, sinceLast time.Duration) {
	o.generationTokens.Inc()
	if !first {
		o.interToken.Observe(sinceLast.Seconds())
	}
}

func (o *modelObserver) Finished(promptTokens, completionTokens int, t runtime.Timing, reason string) {
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
