package playground_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/openai"
	"github.com/parrot-llm/parrot/openai/playground"
)

// The page and its assets are served, with a content security policy, at /
// and /playground/* of an openai.Server; the API's routes are unchanged.
func TestHandlerOnTheServer(t *testing.T) {
	srv := openai.New(openai.Options{Playground: playground.Handler(), APIKeys: []string{"k"}, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		status       int
		ctype, body  string
	}{
		{"GET", "/", 200, "text/html", `<script type="module" src="playground/app.js">`},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/playground/app.js", 200, "text/javascript", "renderMarkdown"},
		{"GET", "/playground/markdown.js", 200, "text/javascript", "escapeHTML"},
		{"GET", "/playground/style.css", 200, "text/css", "@media (max-width: 700px)"},
		{"GET", "/playground/", 302, "", ""},
		{"GET", "/playground/nope.js", 404, "", ""},
		{"GET", "/nope", 404, "application/json", "Unknown path"},
		{"POST", "/", 405, "application/json", ""},
		{"GET", "/v1/models", 401, "application/json", "API key"}, // the page is open, the API is not
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %s", tc.method, tc.path, ct, tc.ctype)
		}
		if !strings.Contains(string(body), tc.body) {
			t.Errorf("%s %s: body lacks %q", tc.method, tc.path, tc.body)
		}
		if tc.status == 200 {
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("%s %s: Content-Security-Policy %q", tc.method, tc.path, csp)
			}
		}
	}
}

// Without the option nothing is mounted: / stays 404.
func TestNoPlayground(t *testing.T) {
	ts := httptest.NewServer(openai.New(openai.Options{Logger: slog.New(slog.DiscardHandler)}).Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / without a playground: %d, want 404", resp.StatusCode)
	}
}
