package openai

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
)

const storiesDir = "../testdata/stories260K"

// testServer is a Server on a real engine, behind httptest.
type testServer struct {
	t      testing.TB
	ts     *httptest.Server
	srv    *Server
	engine *engine.Engine
	reg    *prometheus.Registry
	logs   *syncWriter
	names  []string
}

type serverConfig struct {
	dir     string
	tmpl    string // chat template override (LoadOptions.ChatTemplate)
	names   []string
	keys    []string
	engine  engine.Options
	maxBody int64
	wrap    func(*engine.Engine) Generator // replaces the engine the handlers see
	// readBody and write set Options.ReadBodyTimeout and WriteTimeout.
	readBody, write time.Duration
	// sendBuffer, if set, is the socket send buffer of accepted connections
	// (small, so a client that stops reading stalls the server's writes soon).
	sendBuffer int
}

func newTestServer(t testing.TB, cfg serverConfig) *testServer {
	t.Helper()
	if cfg.dir == "" {
		cfg.dir = storiesDir
	}
	if len(cfg.names) == 0 {
		cfg.names = []string{"stories", "stories-alias"}
	}
	backend := cpu.New(1)
	t.Cleanup(backend.Close)
	loaded, err := llama.Load(cfg.dir, llama.LoadOptions{Quantize: llama.QuantNone, Backend: backend, ChatTemplate: cfg.tmpl})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg, MetricsOptions{VLLMCompat: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg.engine.Observer = metrics.Observer(cfg.names[0])
	engine, err := engine.NewEngine(loaded, cfg.engine)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{}
	srv := New(Options{APIKeys: cfg.keys, MaxBodyBytes: cfg.maxBody, Gatherer: reg,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), ReadBodyTimeout: cfg.readBody, WriteTimeout: cfg.write})
	var gen Generator = engine
	if cfg.wrap != nil {
		gen = cfg.wrap(engine)
	}
	res, err := NewStaticResolver(gen, cfg.names...)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetModels(res)
	ts := httptest.NewUnstartedServer(srv.Handler())
	if cfg.sendBuffer > 0 {
		ts.Listener = smallSendBuffers{ts.Listener, cfg.sendBuffer}
	}
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := engine.Close(ctx); err != nil {
			t.Errorf("engine close: %v", err)
		}
	})
	return &testServer{t: t, ts: ts, srv: srv, engine: engine, reg: reg, logs: logs, names: cfg.names}
}

// smallSendBuffers sets the send buffer of each accepted connection.
type smallSendBuffers struct {
	net.Listener
	bytes int
}

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.bytes)
	}
	return c, err
}

// syncWriter is a log buffer safe for concurrent writes and reads.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// client is the official OpenAI Go client pointed at the server, without
// retries so that errors surface as they are.
func (s *testServer) client(opts ...option.RequestOption) *oai.Client {
	base := []option.RequestOption{option.WithBaseURL(s.ts.URL + "/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0)}
	c := oai.NewClient(append(base, opts...)...)
	return &c
}

// post sends a raw JSON body and returns the status, headers and body.
func (s *testServer) post(path, body string, header ...string) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.ts.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func (s *testServer) get(path string) (int, http.Header, []byte) {
	s.t.Helper()
	resp, err := http.Get(s.ts.URL + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// sseEvents splits an SSE body into its data payloads, checking the framing
// ("data: …" lines, each event ended by a blank line).
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	expectBlank := false
	for sc.Scan() {
		line := sc.Text()
		if expectBlank {
			if line != "" {
				t.Fatalf("SSE event not followed by a blank line: %q", line)
			}
			expectBlank = false
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("SSE line is not a data line: %q", line)
		}
		out = append(out, data)
		expectBlank = true
	}
	return out
}

// errorShape checks the OpenAI error shape: exactly {"error": {message,
// type, param, code}}, message and type non-empty strings, param and code
// string or null; it returns the error object.
func errorShape(body []byte) (map[string]any, error) {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil {
		return nil, fmt.Errorf("error body is not JSON: %v: %s", err, body)
	}
	if len(outer) != 1 || outer["error"] == nil {
		return nil, fmt.Errorf("error body must be {\"error\": …} only: %s", body)
	}
	var e map[string]any
	if err := json.Unmarshal(outer["error"], &e); err != nil {
		return nil, fmt.Errorf("error member is not an object: %s", body)
	}
	if len(e) != 4 {
		return nil, fmt.Errorf("error object must have exactly message, type, param, code: %s", body)
	}
	for _, k := range []string{"message", "type"} {
		if s, ok := e[k].(string); !ok || s == "" {
			return nil, fmt.Errorf("error.%s must be a non-empty string: %s", k, body)
		}
	}
	for _, k := range []string{"param", "code"} {
		v, present := e[k]
		if !present {
			return nil, fmt.Errorf("error.%s missing: %s", k, body)
		}
		if _, isStr := v.(string); v != nil && !isStr {
			return nil, fmt.Errorf("error.%s must be a string or null: %s", k, body)
		}
	}
	return e, nil
}

func checkErrorBody(t *testing.T, body []byte) map[string]any {
	t.Helper()
	e, err := errorShape(body)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// metric returns the value of a gauge or counter series of the registry
// (0 if it does not exist yet).
func (s *testServer) metric(name string, labels map[string]string) float64 {
	s.t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matchLabels(m, labels) {
				switch {
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return 0
}

func matchLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// waitFor polls cond until it holds or the deadline passes (a liveness
// bound, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reference runs a request on the engine directly: the text, tokens and
// finish reason the server must reproduce.
type refResult struct {
	text     string
	tokens   []int32
	finish   string
	prompt   int
	logprobs []float32
}

func (s *testServer) reference(req engine.Request) refResult {
	s.t.Helper()
	ch, err := s.engine.Submit(context.Background(), req)
	if err != nil {
		s.t.Fatal(err)
	}
	var r refResult
	for ev := range ch {
		r.text += ev.Text
		if ev.Token >= 0 && !ev.Done {
			r.tokens = append(r.tokens, ev.Token)
			if ev.Sample != nil {
				r.logprobs = append(r.logprobs, ev.Sample.Logprob)
			}
		}
		if ev.Done {
			if ev.Err != nil {
				s.t.Fatal(ev.Err)
			}
			r.finish = ev.FinishReason
			r.prompt = ev.Usage.PromptTokens
		}
	}
	return r
}
