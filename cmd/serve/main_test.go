package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/config"
	"github.com/parrot-llm/parrot/runtime/hub/hubtest"
)

const storiesDir = "../../testdata/stories260K"

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "--served-model-name") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"--model", storiesDir, "--port", "0"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--port 0") {
		t.Errorf("bad port: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"--model", "/nonexistent/model", "--port", freePort(t)}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "no such directory") {
		t.Errorf("missing model: exit %d, stderr %q", code, errOut.String())
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// The command serves the model, and when its context ends (the signal) it
// lets an in-flight stream finish before exiting 0.
func TestServeAndDrain(t *testing.T) {
	port := freePort(t)
	base := "http://127.0.0.1:" + port
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	logs := &syncBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"--model", storiesDir, "--quantize", "none", "--host", "127.0.0.1", "--port", port,
			"--threads", "1", "--served-model-name", "tiny", "--log-format", "json",
			"--max-num-seqs", "1"}, io.Discard, logs)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
			if resp.StatusCode != 503 {
				t.Fatalf("/health: %d", resp.StatusCode)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	body := `{"model":"tiny","prompt":"Once upon a time","max_tokens":400,"n":8,"ignore_eos":true,"temperature":0,"stream":true}`
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: {") {
		t.Fatalf("first event %q %v", line, err)
	}
	stop() // as SIGTERM does
	// While the stream drains, the server still listens: health checks and
	// new requests are answered 503 with Retry-After.
	for deadline := time.Now().Add(30 * time.Second); ; {
		h, err := http.Head(base + "/health")
		if err != nil {
			t.Fatalf("HEAD /health during the drain: %v", err)
		}
		h.Body.Close()
		if h.StatusCode == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HEAD /health stayed %d after the signal", h.StatusCode)
		}
		time.Sleep(5 * time.Millisecond)
	}
	late, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"model":"tiny","prompt":"Once","max_tokens":2}`))
	if err != nil {
		t.Fatalf("request during the drain: %v", err)
	}
	late.Body.Close()
	if late.StatusCode != 503 || late.Header.Get("Retry-After") == "" {
		t.Errorf("request during the drain: %d, Retry-After %q", late.StatusCode, late.Header.Get("Retry-After"))
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("stream cut during the drain: %v", err)
	}
	// n=8 choices run one after the other (--max-num-seqs 1), so the drain
	// starts long before they end.
	if strings.Count(string(rest), `"finish_reason":"length"`) != 8 || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("stream did not complete during the drain: %s", rest)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d; logs:\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after the drain")
	}
	// The request ended after the drain began, and the server stopped after it.
	l := logs.String()
	order := []string{`"msg":"ready"`, `"msg":"shutting down: draining in-flight requests"`, `"path":"/v1/completions"`, `"msg":"stopped"`}
	at := 0
	for _, msg := range order {
		i := strings.Index(l, msg)
		if i < at {
			t.Errorf("log lines out of order (want %q):\n%s", order, l)
			break
		}
		at = i
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Errorf("still listening after exit")
	}
}

// A Hub id is downloaded into the Hugging Face cache layout, with progress
// logged, and found again offline.
func TestModelFromHub(t *testing.T) {
	var files []hubtest.File
	for _, name := range []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
		"tokenizer_config.json", "special_tokens_map.json", "README.md"} {
		data, err := os.ReadFile(filepath.Join(storiesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, hubtest.File{Name: name, Data: data, LFS: strings.HasSuffix(name, ".safetensors")})
	}
	fake := hubtest.NewServer(t, hubtest.Repo{ID: "tiny-org/stories260K", Files: files})
	cache := t.TempDir()
	t.Setenv("HF_ENDPOINT", fake.Endpoint)
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_HUB_OFFLINE", "")
	t.Setenv("HF_TOKEN", "")

	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	cfg := config.Serve{ModelConfig: config.ModelConfig{Model: "tiny-org/stories260K"}}
	dir, err := modelDir(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	wantDir := filepath.Join(cache, "models--tiny-org--stories260K", "snapshots", fake.Commit("tiny-org/stories260K"))
	if dir != wantDir {
		t.Errorf("snapshot dir %s, want %s", dir, wantDir)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		wanted := strings.HasSuffix(f.Name, ".json") || strings.HasSuffix(f.Name, ".safetensors")
		switch {
		case wanted && (err != nil || !bytes.Equal(got, f.Data)):
			t.Errorf("%s: not downloaded intact (%v)", f.Name, err)
		case !wanted && err == nil:
			t.Errorf("%s: downloaded, but loading does not need it", f.Name)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"downloaded","file":"model.safetensors"`) {
		t.Errorf("no progress for model.safetensors:\n%s", logs.String())
	}

	// Offline, the same snapshot comes from the cache.
	t.Setenv("HF_HUB_OFFLINE", "1")
	cfg.Model = "tiny-org/stories260K@main"
	again, err := modelDir(context.Background(), cfg, log)
	if err != nil || again != dir {
		t.Errorf("offline: %s %v, want %s", again, err, dir)
	}
	cfg.Model = "tiny-org/not-cached"
	if _, err := modelDir(context.Background(), cfg, log); err == nil {
		t.Errorf("offline download of an uncached repo succeeded")
	}
}

// Connections that send nothing, or stay idle after a request, are closed
// after --read-header-timeout and --idle-timeout instead of staying open.
func TestServeClosesSilentAndIdleConnections(t *testing.T) {
	port := freePort(t)
	addr := "127.0.0.1:" + port
	ctx, stop := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	logs := &syncBuffer{}
	go func() {
		exit <- run(ctx, []string{"--model", storiesDir, "--quantize", "none", "--host", "127.0.0.1", "--port", port,
			"--threads", "1", "--read-header-timeout", "200ms", "--idle-timeout", "200ms"}, io.Discard, logs)
	}()
	defer func() {
		stop()
		<-exit
	}()
	var silent, idle net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("server not up; logs:\n%s", logs.String())
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			continue
		}
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
		st, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && strings.HasPrefix(st, "HTTP/1.1 200") {
			idle = c // kept alive after a request
			break
		}
		c.Close()
	}
	defer idle.Close()
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for name, c := range map[string]net.Conn{"silent": silent, "idle": idle} {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second)) // a liveness bound
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("%s connection not closed by the server: %v", name, err)
		}
	}
}

// The KV budget's "available memory" is the machine's, or a container's
// cgroup limit less its usage when that is smaller.
func TestMemAvailableHonoursCgroupLimits(t *testing.T) {
	write := func(root, name, data string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	meminfo := "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n"
	for _, c := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"no cgroup", nil, 20000000 << 10},
		{"v2 limit", map[string]string{"sys/fs/cgroup/memory.max": "4294967296\n", "sys/fs/cgroup/memory.current": "1073741824\n"}, 3 << 30},
		{"v2 unlimited", map[string]string{"sys/fs/cgroup/memory.max": "max\n", "sys/fs/cgroup/memory.current": "1073741824\n"}, 20000000 << 10},
		{"v1 limit", map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "2147483648", "sys/fs/cgroup/memory/memory.usage_in_bytes": "1073741824"}, 1 << 30},
		{"v1 unlimited", map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712", "sys/fs/cgroup/memory/memory.usage_in_bytes": "1"}, 20000000 << 10},
		{"over the limit", map[string]string{"sys/fs/cgroup/memory.max": "100", "sys/fs/cgroup/memory.current": "200"}, 0},
	} {
		root := t.TempDir()
		write(root, "proc/meminfo", meminfo)
		for name, data := range c.files {
			write(root, name, data)
		}
		got, err := memAvailable(root)
		if err != nil || got != c.want {
			t.Errorf("%s: %d, %v; want %d", c.name, got, err, c.want)
		}
	}
	if _, err := memAvailable(t.TempDir()); err == nil {
		t.Error("no /proc/meminfo: want an error")
	}
}
