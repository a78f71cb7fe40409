package openai

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Readiness and liveness through a server's whole life: /health (GET and
// HEAD) is 503 while the model loads, 200 while serving, 503 while
// draining; /livez is 200 in all three, so a liveness probe never restarts
// a server that is loading or finishing its requests. Both stay open when
// API keys are set, as /health and /metrics do in vLLM.
func TestLivenessAndReadiness(t *testing.T) {
	ready := newTestServer(t, serverConfig{})
	srv := New(Options{APIKeys: []string{"secret"}})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	probe := func(stage string, want map[string]int) {
		t.Helper()
		for path, code := range want {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				req, err := http.NewRequest(method, ts.URL+path, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != code {
					t.Errorf("%s: %s %s = %d, want %d", stage, method, path, resp.StatusCode, code)
				}
			}
		}
	}
	probe("loading", map[string]int{HealthPath: 503, LivenessPath: 200})
	res, err := NewStaticResolver(ready.engine, "m")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetModels(res)
	probe("serving", map[string]int{HealthPath: 200, LivenessPath: 200})
	srv.SetDraining()
	probe("draining", map[string]int{HealthPath: 503, LivenessPath: 200})
	// Other methods are refused, not answered as a probe.
	resp, err := http.Post(ts.URL+LivenessPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s = %d, want 405", LivenessPath, resp.StatusCode)
	}
}
