package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	xs := []float64{4, 1, 3, 2} // sorted 1 2 3 4: rank q/100·3
	for _, c := range []struct{ q, want float64 }{
		{0, 1}, {50, 2.5}, {90, 3.7}, {99, 3.97}, {100, 4},
	} {
		if got := percentile(xs, c.q); abs64(got-c.want) > 1e-9 {
			t.Errorf("percentile(%v, %v) = %v, want %v", xs, c.q, got, c.want)
		}
	}
	if got := percentile([]float64{10, 20}, 90); abs64(got-19) > 1e-9 {
		t.Errorf("p90 of 10, 20 = %v, want 19", got)
	}
	if got := percentile([]float64{7}, 99); got != 7 {
		t.Errorf("p99 of one value = %v, want 7", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
	if xs[0] != 4 {
		t.Error("percentile sorted its argument in place")
	}
	s := summarize([]float64{1, 2, 3, 4})
	if s.Mean != 2.5 || s.P50 != 2.5 || s.P90 != 3.7 || s.P99 != 3.97 || s.N != 4 {
		t.Errorf("summarize = %+v", s)
	}
}

func abs64(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestLengthRange(t *testing.T) {
	for _, c := range []struct {
		mean         int
		r            float64
		wantLo, want int
	}{
		{100, 0.1, 90, 110}, {10, 0, 10, 10}, {1, 0.5, 1, 2}, {3, 0.5, 1, 5},
	} {
		if lo, hi := lengthRange(c.mean, c.r); lo != c.wantLo || hi != c.want {
			t.Errorf("lengthRange(%d, %v) = %d, %d; want %d, %d", c.mean, c.r, lo, hi, c.wantLo, c.want)
		}
	}
}

func TestReadEvents(t *testing.T) {
	in := ": ping\r\n\r\n" +
		"event: delta\r\ndata: one\r\n\r\n" +
		"data: two\ndata:three\n\n" + // two data lines, the second without the space
		"id: 7\n\n" + // no data: no event
		"data: last" // no blank line before EOF
	var got []string
	if err := readEvents(strings.NewReader(in), func(d []byte) error { got = append(got, string(d)); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"one", "two\nthree", "last"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestReadStream(t *testing.T) {
	t0 := time.Unix(1000, 0)
	calls := 0
	clock := func() time.Time { calls++; return t0.Add(time.Duration(calls) * time.Millisecond) }
	in := `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}` + "\n\n" + // 1 ms: role, not content
		`data: {"choices":[{"index":0,"delta":{"content":"Hel"}}],"usage":null}` + "\n\n" + // 2 ms
		": keep-alive\n\n" + // a comment: no clock
		`data: {"choices":[{"index":0,"delta":{"content":"lo"}}],"usage":null}` + "\n\n" + // 3 ms
		`data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":null}` + "\n\n" + // 4 ms
		`data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":5}}}` + "\n\n" +
		"data: [DONE]\n\n" +
		`data: {"choices":[{"delta":{"content":"after done"}}]}` + "\n\n"
	s, err := readStream(strings.NewReader(in), clock)
	if err != nil {
		t.Fatal(err)
	}
	if !s.done || s.text.String() != "Hello" {
		t.Errorf("done %v, text %q", s.done, s.text.String())
	}
	if len(s.contents) != 2 || !s.contents[0].Equal(t0.Add(2*time.Millisecond)) || !s.contents[1].Equal(t0.Add(3*time.Millisecond)) {
		t.Errorf("content times %v", s.contents)
	}
	if u := s.usage; u == nil || u.PromptTokens != 9 || u.CompletionTokens != 2 || u.PromptTokensDetails == nil || u.PromptTokensDetails.CachedTokens != 5 {
		t.Errorf("usage %+v", s.usage)
	}

	// A completions stream: choices[].text.
	s, err = readStream(strings.NewReader(`data: {"choices":[{"text":"a"}]}`+"\n\n"+`data: {"choices":[{"text":"b"}]}`+"\n\ndata: [DONE]\n\n"), time.Now)
	if err != nil || s.text.String() != "ab" || len(s.contents) != 2 || s.usage != nil {
		t.Errorf("completions stream: %q, %d contents, usage %v, err %v", s.text.String(), len(s.contents), s.usage, err)
	}

	// An error event mid-stream.
	_, err = readStream(strings.NewReader(`data: {"choices":[{"text":"a"}]}`+"\n\n"+
		`data: {"error":{"message":"The engine failed.","type":"server_error","param":null,"code":null}}`+"\n\ndata: [DONE]\n\n"), time.Now)
	if err == nil || !strings.Contains(err.Error(), "The engine failed.") {
		t.Errorf("error event: %v", err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "give --url"},
		{[]string{"--url", "localhost:8000"}, "want http://host:port"},
		{[]string{"--url", "http://h:8000/v1"}, "without a path"},
		{[]string{"--url", "http://h", "--concurrency", "0"}, "--concurrency 0"},
		{[]string{"--url", "http://h", "--num-requests", "-1"}, "--num-requests -1"},
		{[]string{"--url", "http://h", "--range-ratio", "1.5"}, "--range-ratio 1.5"},
		{[]string{"--url", "http://h", "--endpoint", "/v1/embeddings"}, "--endpoint"},
		{[]string{"--url", "http://h", "--turns", "0"}, "--turns 0"},
		{[]string{"--url", "http://h", "--prompt-tokens", "0"}, "--prompt-tokens 0"},
		{[]string{"--url", "http://h", "--temperature", "-1"}, "--temperature -1"},
		{[]string{"--url", "http://h", "--threads", "0"}, "--threads 0"},
		{[]string{"--url", "http://h", "--concurrency", "many"}, "invalid value"},
		{[]string{"--serve-args", "--model x"}, "--serve-args needs --serve-bin"},
		{[]string{"--url", "http://h", "stray"}, `unexpected argument "stray"`},
		{[]string{"--no-such-flag"}, "not defined"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) || stdout.Len() > 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// fakeAPI fakes the streaming OpenAI API of serve: a role chunk at once,
// then after ttft the first token, then one token every itl, a finish
// chunk, a usage chunk (with cached_tokens) and [DONE]. Model "limited" is
// answered 429 (after ttft, so that it holds its client as long) with an
// OpenAI error body. Its token counts are words.
type fakeAPI struct {
	ttft, itl  time.Duration
	cached     int
	noTokenize bool

	mu        sync.Mutex
	inFlight  int
	peak      int
	requests  int
	problems  []string
	maxTurn   int      // most user messages seen in one request
	bodies    []string // the conversation texts seen, in order
	systemMsg map[string]bool
}

func (f *fakeAPI) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/models":
		fmt.Fprint(w, `{"object":"list","data":[{"id":"fake-base","object":"model"}]}`)
	case "/tokenize":
		if f.noTokenize {
			http.NotFound(w, r)
			return
		}
		var req struct {
			Prompt           string `json:"prompt"`
			AddSpecialTokens *bool  `json:"add_special_tokens"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.AddSpecialTokens == nil || *req.AddSpecialTokens {
			f.problem("/tokenize body: %v, add_special_tokens %v", err, req.AddSpecialTokens)
		}
		fmt.Fprintf(w, `{"count":%d,"max_model_len":4096,"tokens":[]}`, len(strings.Fields(req.Prompt)))
	case chatEndpoint, completionEndpoint:
		f.generate(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeAPI) generate(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	f.inFlight++
	f.peak = max(f.peak, f.inFlight)
	f.mu.Unlock()
	// A request leaves before its last write: once the client has read
	// it, it may send the next one while this handler is still returning.
	leave := func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}

	var req struct {
		Model         string         `json:"model"`
		Stream        bool           `json:"stream"`
		StreamOptions map[string]any `json:"stream_options"`
		MaxTokens     int            `json:"max_tokens"`
		IgnoreEOS     bool           `json:"ignore_eos"`
		Temperature   *float64       `json:"temperature"`
		Messages      []message      `json:"messages"`
		Prompt        *string        `json:"prompt"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.problem("body: %v", err)
	}
	if !req.Stream || req.StreamOptions["include_usage"] != true || !req.IgnoreEOS || req.MaxTokens < 1 ||
		req.Temperature == nil || *req.Temperature != 0 {
		f.problem("request %+v", req)
	}
	chat := r.URL.Path == chatEndpoint
	var text string
	if chat {
		users := 0
		var parts []string
		for i, m := range req.Messages {
			parts = append(parts, m.Content)
			switch {
			case m.Role == "system" && i == 0:
				f.mu.Lock()
				f.systemMsg[m.Content] = true
				f.mu.Unlock()
			case m.Role == "user":
				users++
			case m.Role != "assistant":
				f.problem("message %d role %q", i, m.Role)
			}
		}
		text = strings.Join(parts, "\n")
		f.mu.Lock()
		f.maxTurn = max(f.maxTurn, users)
		f.mu.Unlock()
	} else if req.Prompt != nil {
		text = *req.Prompt
	} else {
		f.problem("completions request without a prompt")
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, text)
	f.mu.Unlock()

	if req.Model == "limited" {
		time.Sleep(f.ttft)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		leave()
		fmt.Fprint(w, `{"error":{"message":"The server is busy: 256 requests wait.","type":"requests","param":null,"code":null}}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	send := func(s string) {
		fmt.Fprintf(w, "data: %s\n\n", s)
		w.(http.Flusher).Flush()
	}
	token := func(s string) string {
		if chat {
			return fmt.Sprintf(`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%q}}],"usage":null}`, s)
		}
		return fmt.Sprintf(`{"object":"text_completion","choices":[{"index":0,"text":%q}],"usage":null}`, s)
	}
	if chat {
		send(`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}`)
	}
	time.Sleep(f.ttft)
	for i := range req.MaxTokens {
		if i > 0 {
			time.Sleep(f.itl)
		}
		send(token(fmt.Sprintf(" w%d", i)))
	}
	send(`{"choices":[{"index":0,"delta":{},"text":"","finish_reason":"length"}],"usage":null}`)
	prompt := len(strings.Fields(text))
	send(fmt.Sprintf(`{"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d}}}`,
		prompt, req.MaxTokens, prompt+req.MaxTokens, f.cached))
	leave()
	send("[DONE]")
}

func newFake(t *testing.T, f *fakeAPI) string {
	f.systemMsg = map[string]bool{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

// runBench runs the command and decodes its report.
func runBench(t *testing.T, args ...string) report {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	return rep
}

// Four clients stream against the fake; every third conversation is sent
// to an adapter the fake refuses with 429.
func TestFakeServer(t *testing.T) {
	const ttft, itl = 40 * time.Millisecond, 10 * time.Millisecond
	f := &fakeAPI{ttft: ttft, itl: itl, cached: 3}
	url := newFake(t, f)
	out := filepath.Join(t.TempDir(), "report.json")
	rep := runBench(t, "--url", url, "--concurrency", "4", "--num-requests", "12", "--adapters", "a,b,limited",
		"--prompt-tokens", "20", "--output-tokens", "6", "--bandwidth-mib", "4", "--out", out)
	f.mu.Lock() // the handlers may still be returning
	defer f.mu.Unlock()

	if len(f.problems) > 0 {
		t.Errorf("the fake saw: %q", f.problems)
	}
	if f.peak != 4 {
		t.Errorf("peak concurrency %d, want 4", f.peak)
	}
	if rep.Requests != 12 || rep.Completed != 8 || rep.Errors != 4 || f.requests != 12 {
		t.Errorf("requests %d, completed %d, errors %d (the fake saw %d); want 12, 8, 4", rep.Requests, rep.Completed, rep.Errors, f.requests)
	}
	if len(rep.FirstErrs) != 1 || rep.FirstErrs[0] != "HTTP 429: The server is busy: 256 requests wait." {
		t.Errorf("error messages %q", rep.FirstErrs)
	}
	if fmt.Sprint(rep.Models) != "[a b limited]" || rep.Model != "fake-base" {
		t.Errorf("model %q, models %v", rep.Model, rep.Models)
	}
	if rep.TotalOutputTokens != 8*6 || rep.MeanOutputTokens != 6 || rep.CachedPromptTokens != 8*3 {
		t.Errorf("output tokens %d (mean %v), cached %d; want 48 (6), 24", rep.TotalOutputTokens, rep.MeanOutputTokens, rep.CachedPromptTokens)
	}
	// The fake counts a word as a token and so does the fit: each prompt is
	// exactly 20 words.
	if rep.TotalPromptTokens != 8*20 || rep.MeanPromptTokens != 20 || rep.Prompts.Method != "tokenize" ||
		rep.Prompts.TokensPerWord != 1 || rep.Prompts.MaxAbsErrorTok == nil || *rep.Prompts.MaxAbsErrorTok != 0 {
		t.Errorf("prompt tokens %d (mean %v), fit %+v", rep.TotalPromptTokens, rep.MeanPromptTokens, rep.Prompts)
	}
	// The role chunk comes at once: TTFT is the first content, after ttft.
	within := func(name string, got latency, lo, slack time.Duration) {
		if got.P50 < millis(lo) || got.P50 > millis(lo+slack) || got.Mean < millis(lo) || got.Mean > millis(lo+slack) {
			t.Errorf("%s %+v, want p50 and mean in [%v, %v]", name, got, lo, lo+slack)
		}
	}
	within("TTFT", rep.TTFT, ttft, 60*time.Millisecond)
	within("ITL", rep.ITL, itl, 30*time.Millisecond)
	within("TPOT", rep.TPOT, itl, 30*time.Millisecond)
	within("E2E", rep.E2E, ttft+5*itl, 100*time.Millisecond)
	if rep.TTFT.N != 8 || rep.ITL.N != 8*5 {
		t.Errorf("TTFT samples %d, ITL samples %d; want 8, 40", rep.TTFT.N, rep.ITL.N)
	}
	if rep.OutputTokensPerS <= 0 || rep.RequestsPerS <= 0 || rep.DurationS <= 0 {
		t.Errorf("rates %v tok/s, %v req/s over %v s", rep.OutputTokensPerS, rep.RequestsPerS, rep.DurationS)
	}
	if rep.BandwidthGBps <= 0 || rep.BandwidthThreads != 2 || rep.Serve != nil {
		t.Errorf("bandwidth %v GB/s on %d threads, serve %+v", rep.BandwidthGBps, rep.BandwidthThreads, rep.Serve)
	}
	saved, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var fromFile report
	if err := json.Unmarshal(saved, &fromFile); err != nil || fromFile.Completed != rep.Completed {
		t.Errorf("--out: %v, %s", err, saved)
	}
}

// Multi-turn conversations with a shared system prefix: each turn resends
// the earlier ones with their replies.
func TestMultiTurn(t *testing.T) {
	for _, endpoint := range []string{chatEndpoint, completionEndpoint} {
		t.Run(strings.TrimPrefix(endpoint, "/v1/"), func(t *testing.T) {
			f := &fakeAPI{ttft: time.Millisecond, itl: time.Millisecond, noTokenize: endpoint == completionEndpoint}
			url := newFake(t, f)
			rep := runBench(t, "--url", url, "--endpoint", endpoint, "--concurrency", "2", "--num-requests", "3", "--turns", "3",
				"--shared-prefix-tokens", "7", "--prompt-tokens", "10", "--output-tokens", "4", "--range-ratio", "0.5",
				"--bandwidth-mib", "0", "--seed", "42")
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.problems) > 0 {
				t.Errorf("the fake saw: %q", f.problems)
			}
			if rep.Requests != 9 || rep.Completed != 9 || rep.Conversations != 3 || rep.Turns != 3 {
				t.Errorf("requests %d, completed %d, conversations %d, turns %d", rep.Requests, rep.Completed, rep.Conversations, rep.Turns)
			}
			if rep.BandwidthGBps != 0 {
				t.Errorf("bandwidth probed with --bandwidth-mib 0: %v", rep.BandwidthGBps)
			}
			// Every request after a conversation's first holds a reply
			// of the fake's (" w0 w1 ...").
			withReply := 0
			for _, b := range f.bodies {
				if strings.Contains(b, " w0 w1") {
					withReply++
				}
			}
			if withReply != 6 {
				t.Errorf("%d of 9 requests carried an earlier reply, want 6", withReply)
			}
			if endpoint == chatEndpoint {
				if f.maxTurn != 3 || len(f.systemMsg) != 1 || rep.Prompts.SharedPrefixTok != 7 {
					t.Errorf("most user messages %d (want 3), distinct system messages %d (want 1), prefix %d tokens (want 7)",
						f.maxTurn, len(f.systemMsg), rep.Prompts.SharedPrefixTok)
				}
			} else if rep.Prompts.Method != "assumed" || rep.Prompts.TokensPerWord != assumedTokensPerWord || rep.Prompts.MaxAbsErrorTok != nil {
				t.Errorf("without /tokenize: fit %+v", rep.Prompts)
			}
		})
	}
}

// The benchmark starts the real serve on the tiny model, loads it, and
// stops it.
func TestRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/serve; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build cmd/serve with")
	}
	bin := filepath.Join(t.TempDir(), "serve")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/parrot-llm/parrot/cmd/serve")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Skipf("cmd/serve does not build (the tree may be mid-edit), so the real-server benchmark is skipped: %v\n%s", err, msg)
	}
	model, err := filepath.Abs("../../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	rep := runBench(t, "--serve-bin", bin,
		"--serve-args", "--model "+model+" --quantize none --threads 2 --log-level warn",
		"--endpoint", completionEndpoint, "--concurrency", "2", "--num-requests", "4", "--turns", "2",
		"--shared-prefix-tokens", "48", "--prompt-tokens", "16", "--output-tokens", "8", "--bandwidth-mib", "16",
		"--startup-timeout", "60s")
	if rep.Completed != 8 || rep.Errors != 0 {
		t.Fatalf("completed %d, errors %d %q", rep.Completed, rep.Errors, rep.FirstErrs)
	}
	// ignore_eos: every reply has max_tokens tokens.
	if rep.TotalOutputTokens != 8*8 {
		t.Errorf("output tokens %d, want 64", rep.TotalOutputTokens)
	}
	// The shared prefix (and each second turn's first) comes from the cache.
	if rep.CachedPromptTokens <= 0 || rep.Prompts.Method != "tokenize" || rep.Prompts.SharedPrefixTok < 44 {
		t.Errorf("cached %d, fit %+v", rep.CachedPromptTokens, rep.Prompts)
	}
	if rep.Serve == nil || rep.Serve.PeakRSSMiB <= 0 || rep.Serve.VmHWMMiB < rep.Serve.PeakRSSMiB || rep.Serve.Exit != "exit status 0" {
		t.Errorf("serve %+v", rep.Serve)
	}
	if rep.TTFT.P50 <= 0 || rep.ITL.N == 0 || rep.BandwidthGBps <= 0 {
		t.Errorf("TTFT %+v, ITL %+v, bandwidth %v", rep.TTFT, rep.ITL, rep.BandwidthGBps)
	}
}
