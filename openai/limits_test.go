package openai

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/runtime/engine"
)

// head sends HEAD path and returns the status.
func (s *testServer) head(path string) int {
	s.t.Helper()
	resp, err := http.Head(s.ts.URL + path)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rawConn dials the test server; rcvBuf > 0 sets a small receive buffer
// (before connecting, so the TCP window is small too).
func (s *testServer) rawConn(t *testing.T, rcvBuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvBuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.Dial("tcp", s.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Clients that announce a large body and never finish it are answered 408
// and disconnected once the body timeout passes, instead of each holding
// a connection and its buffered body for ever.
func TestUnfinishedBodiesAreCut(t *testing.T) {
	s := newTestServer(t, serverConfig{readBody: 300 * time.Millisecond})
	const clients = 50
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = s.rawConn(t, 0)
		head := "POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 4000000\r\n\r\n"
		if _, err := io.WriteString(conns[i], head+`{"model": "stories", "messages": [{"role": "user", "content": "`+strings.Repeat("a", 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	statuses := make([]string, clients)
	for i, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a liveness bound
			all, err := io.ReadAll(c)                               // to EOF: the server closed the connection
			if err != nil {
				statuses[i] = "not closed: " + err.Error()
				return
			}
			statuses[i], _, _ = strings.Cut(string(all), "\r\n")
		})
	}
	wg.Wait()
	for i, st := range statuses {
		if st != "HTTP/1.1 408 Request Timeout" {
			t.Errorf("client %d: %q, want a 408 and a closed connection", i, st)
		}
	}
}

// A streaming client that stops reading is cut after the write timeout:
// its sequences stop and are freed, and the goroutines serving it end.
func TestStalledStreamReaderIsCancelled(t *testing.T) {
	s := newTestServer(t, serverConfig{write: 300 * time.Millisecond, sendBuffer: 4096})
	// Warm up so that the goroutine count below has the server's own.
	if code, _, body := s.post("/v1/completions", `{"model": "stories", "prompt": "Once", "max_tokens": 2}`); code != 200 {
		t.Fatalf("warm-up: %d %s", code, body)
	}
	before := goruntime.NumGoroutine()
	c := s.rawConn(t, 4096)
	body := `{"model": "stories", "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true, "n": 8, "stream": true}`
	fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	running := map[string]string{"model_name": "stories"}
	waitFor(t, "the stream to start", func() bool { return s.metric("parrot:num_requests_running", running) > 0 })
	// Never read: the 8 x 400 events (~500 KB) overflow the socket buffers,
	// the writes stall, and the write timeout must end the request.
	waitFor(t, "the stalled stream's sequences to be freed", func() bool {
		return s.metric("parrot:num_requests_running", running) == 0 && s.metric("parrot:num_requests_waiting", running) == 0
	})
	waitFor(t, "the server to close the stalled connection", func() bool {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		return err == nil // EOF
	})
	waitFor(t, "the stream's goroutines to end", func() bool { return goruntime.NumGoroutine() <= before })
	if got := s.metric("parrot:request_success_total", map[string]string{"finished_reason": "abort"}); got != 8 {
		t.Errorf("%v sequences aborted, want the stalled request's 8", got)
	}
}

// While the server drains, new requests get 503 with Retry-After (so a
// balancer retries them elsewhere), HEAD /health answers 503, and the
// request in flight finishes.
func TestDrainRefusesNewRequests(t *testing.T) {
	s := newTestServer(t, serverConfig{engine: engine.Options{MaxRunning: 1}})
	if code := s.head("/health"); code != 200 {
		t.Fatalf("HEAD /health before the drain: %d", code)
	}
	resp, err := http.Post(s.ts.URL+"/v1/completions", "application/json",
		strings.NewReader(`{"model": "stories", "prompt": "Once", "max_tokens": 200, "ignore_eos": true, "n": 4, "stream": true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: {") {
		t.Fatalf("first event %q %v", line, err)
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drained <- s.srv.Drain(ctx)
	}()
	waitFor(t, "the drain to start", func() bool { return s.head("/health") == 503 })
	code, h, body := s.post("/v1/completions", `{"model": "stories", "prompt": "Once", "max_tokens": 2}`)
	if code != 503 || h.Get("Retry-After") == "" {
		t.Errorf("request during the drain: %d, Retry-After %q, %s", code, h.Get("Retry-After"), body)
	}
	checkErrorBody(t, body)
	rest, err := io.ReadAll(r)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("the stream in flight did not finish: %v", err)
	}
	if err := <-drained; err != nil {
		t.Errorf("Drain: %v", err)
	}
}

// Token id arrays with null entries are refused, not read as token 0.
func TestNullTokenIDsAreRefused(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	for _, tc := range []struct{ path, body, param string }{
		{"/v1/completions", `{"model": "stories", "prompt": [null, null]}`, "prompt"},
		{"/v1/completions", `{"model": "stories", "prompt": [1, null]}`, "prompt"},
		{"/v1/completions", `{"model": "stories", "prompt": [[1, 2], [null]]}`, "prompt[1]"},
		{"/detokenize", `{"model": "stories", "tokens": [null]}`, "tokens"},
		{"/detokenize", `{"model": "stories", "tokens": [5, null]}`, "tokens"},
	} {
		code, _, body := s.post(tc.path, tc.body)
		e := checkErrorBody(t, body)
		if code != 400 || e["param"] != tc.param || !strings.Contains(fmt.Sprint(e["message"]), "null") {
			t.Errorf("%s %s: %d %s", tc.path, tc.body, code, body)
		}
	}
}
