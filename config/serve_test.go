package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "serve.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A local model directory is served under its last path element, so that
// the server's paths reach neither clients nor metric labels.
func TestServeDefaultNameOfLocalModelHidesItsPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my-llama")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{dir, dir + "/", "./" + filepath.Base(dir)} {
		if arg[0] == '.' {
			t.Chdir(filepath.Dir(dir))
		}
		c, err := ParseServe([]string{"--model", arg}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.ServedModelNames, []string{"my-llama"}) {
			t.Errorf("--model %s: served as %q, want [my-llama]", arg, c.ServedModelNames)
		}
	}
}

func TestServeDefaults(t *testing.T) {
	c, err := ParseServe([]string{"--model", "org/name"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Serve{
		ModelConfig: ModelConfig{Model: "org/name", Quantize: "nf4", Backend: "cpu"}, ServedModelNames: []string{"org/name"}, Port: 8000,
		MaxNumSeqs: 16, MaxNumBatchedTokens: 512, KVCacheFraction: 0.5, MaxWaitingRequests: 256, MaxRequestBodyBytes: 4 << 20,
		ShutdownTimeout: 30 * time.Second, LogLevel: "info", LogFormat: "text",
		MaxLoRAs: 4, MaxLoRARank: 16, LoRADtype: "bfloat16", KVCacheDtype: "auto", Playground: true, MetricsCompat: "vllm", NF4Decode: "int8", NF4Prefill: "int8",
		ReadHeaderTimeout: 10 * time.Second, ReadBodyTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.Addr() != ":8000" {
		t.Errorf("Addr = %q, want :8000", c.Addr())
	}
}

// Precedence: flag > environment > file > default, per key.
func TestServePrecedence(t *testing.T) {
	file := writeYAML(t, "model: from-file\nport: 9000\nmax_model_len: 128\nlog-format: json\nshutdown-timeout: 5s\n")
	c, err := ParseServe([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model != "from-file" || c.Port != 9000 || c.MaxModelLen != 128 || c.LogFormat != "json" || c.ShutdownTimeout != 5*time.Second {
		t.Fatalf("file values not applied: %+v", c)
	}

	t.Setenv("PARROT_PORT", "9100")
	t.Setenv("PARROT_MAX_MODEL_LEN", "256")
	c, err = ParseServe([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9100 || c.MaxModelLen != 256 || c.Model != "from-file" {
		t.Fatalf("env should win over file: %+v", c)
	}

	c, err = ParseServe([]string{"--config", file, "--port", "9200"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9200 || c.MaxModelLen != 256 {
		t.Fatalf("flag should win over env: %+v", c)
	}

	// The config file itself can come from the environment.
	t.Setenv("PARROT_CONFIG", file)
	c, err = ParseServe(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model != "from-file" || c.ConfigFile != file {
		t.Fatalf("PARROT_CONFIG not read: %+v", c)
	}
}

func TestServeLists(t *testing.T) {
	c, err := ParseServe([]string{"--model", "m", "--api-key", "k1", "--api-key", "k2,k3", "--served-model-name", "a", "--served-model-name", "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.APIKeys, []string{"k1", "k2", "k3"}) || !reflect.DeepEqual(c.ServedModelNames, []string{"a", "b"}) {
		t.Fatalf("flag lists: keys %q names %q", c.APIKeys, c.ServedModelNames)
	}

	t.Setenv("PARROT_API_KEY", "x, y")
	c, err = ParseServe([]string{"--model", "m"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.APIKeys, []string{"x", "y"}) {
		t.Fatalf("env list: %q", c.APIKeys)
	}

	os.Unsetenv("PARROT_API_KEY")
	file := writeYAML(t, "model: m\napi-key: [p, q]\nserved-model-name: alias\n")
	c, err = ParseServe([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.APIKeys, []string{"p", "q"}) || !reflect.DeepEqual(c.ServedModelNames, []string{"alias"}) {
		t.Fatalf("yaml lists: keys %q names %q", c.APIKeys, c.ServedModelNames)
	}
}

func TestServeInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		yaml string
		want string // substring of the error
	}{
		{"no model", nil, nil, "", "--model is required"},
		{"port range", []string{"--model", "m", "--port", "70000"}, nil, "", "--port 70000"},
		{"port type", []string{"--model", "m", "--port", "x"}, nil, "", "invalid argument"},
		{"env port type", []string{"--model", "m"}, map[string]string{"PARROT_PORT": "eighty"}, "", "PARROT_PORT"},
		{"env octal-looking", []string{"--model", "m"}, map[string]string{"PARROT_THREADS": "0x10"}, "", "PARROT_THREADS"},
		{"quantize", []string{"--model", "m", "--quantize", "int8"}, nil, "", "--quantize \"int8\""},
		{"backend", []string{"--model", "m", "--backend", "metal"}, nil, "", "--backend \"metal\""},
		{"log level", []string{"--model", "m", "--log-level", "loud"}, nil, "", "--log-level"},
		{"log format", []string{"--model", "m", "--log-format", "xml"}, nil, "", "--log-format"},
		{"metrics compat", []string{"--model", "m", "--metrics-compat", "sglang"}, nil, "", "--metrics-compat \"sglang\": must be vllm or none"},
		{"nf4 decode", []string{"--model", "m", "--nf4-decode", "int4"}, nil, "", "--nf4-decode \"int4\": must be int8 or float32"},
		{"nf4 prefill", []string{"--model", "m", "--nf4-prefill", "fp8"}, nil, "", "--nf4-prefill \"fp8\": must be int8 or float32"},
		{"lora dtype", []string{"--model", "m", "--lora-dtype", "fp16"}, nil, "", "--lora-dtype \"fp16\": must be bfloat16 or float32"},
		{"kv dtype", []string{"--model", "m", "--kv-cache-dtype", "fp8"}, nil, "", "--kv-cache-dtype \"fp8\": must be auto, bfloat16 or float32"},
		{"two lm_head widths", []string{"--model", "m", "--lm-head-8bit", "--lm-head-4bit"}, nil, "", "--lm-head-8bit and --lm-head-4bit: choose one"},
		{"metrics compat env", []string{"--model", "m"}, map[string]string{"PARROT_METRICS_COMPAT": "tgi"}, "", "--metrics-compat \"tgi\""},
		{"negative len", []string{"--model", "m", "--max-model-len", "-1"}, nil, "", "--max-model-len -1"},
		{"kv memory", []string{"--model", "m", "--kv-cache-memory", "lots"}, nil, "", "--kv-cache-memory"},
		{"long prefill", []string{"--model", "m", "--long-prefill-token-threshold", "-2"}, nil, "", "--long-prefill-token-threshold -2"},
		{"seqs", []string{"--model", "m", "--max-num-seqs", "0"}, nil, "", "--max-num-seqs 0"},
		{"body", []string{"--model", "m", "--max-request-body-bytes", "10"}, nil, "", "--max-request-body-bytes 10"},
		{"duration", []string{"--model", "m"}, map[string]string{"PARROT_SHUTDOWN_TIMEOUT": "5"}, "", "duration"},
		{"duplicate alias", []string{"--model", "m", "--served-model-name", "a,a"}, nil, "", "given twice"},
		{"revision twice", []string{"--model", "o/n@v1", "--revision", "v2"}, nil, "", "already names a revision"},
		{"adapters dir", []string{"--model", "m", "--adapters-dir", "/nonexistent/adapters"}, nil, "", "--adapters-dir"},
		{"lora spec", []string{"--model", "m", "--lora", "pirate"}, nil, "", "want name=path"},
		{"lora slots", []string{"--model", "m", "--max-loras", "0"}, nil, "", "--max-loras 0"},
		{"lora rank", []string{"--model", "m", "--max-lora-rank", "1024"}, nil, "", "--max-lora-rank 1024"},
		{"lora admin without dir", []string{"--model", "m", "--enable-lora-admin"}, nil, "", "needs --adapters-dir"},
		{"lora admin env", []string{"--model", "m"}, map[string]string{"PARROT_ENABLE_LORA_ADMIN": "maybe"}, "", "PARROT_ENABLE_LORA_ADMIN"},
		{"unknown flag", []string{"--model", "m", "--prot", "1"}, nil, "", "unknown flag: --prot"},
		{"positional", []string{"m"}, nil, "", "unexpected argument"},
		{"unknown yaml key", nil, nil, "model: m\nprot: 1\n", "unknown setting \"prot\""},
		{"yaml type", nil, nil, "model: m\nport: [1]\n", "--port"},
		{"yaml duration without unit", nil, nil, "model: m\nshutdown-timeout: 30\n", "duration"},
		{"missing file", []string{"--config", "/nonexistent/serve.yaml"}, nil, "", "file not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.yaml != "" {
				args = append(args, "--config", writeYAML(t, tc.yaml))
			}
			_, err := ParseServe(args, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestServeHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := ParseServe([]string{"--help"}, &out)
	if !errors.Is(err, ErrHelp) {
		t.Fatalf("err = %v, want ErrHelp", err)
	}
	help := out.String()
	for _, flag := range []string{"model", "served-model-name", "host", "port", "quantize", "max-model-len", "threads",
		"backend", "api-key", "adapters-dir", "max-num-seqs", "max-num-batched-tokens", "max-waiting-requests",
		"max-request-body-bytes", "shutdown-timeout", "log-level", "log-format", "config", "revision", "chat-template", "metrics-compat"} {
		if !strings.Contains(help, "--"+flag+" ") {
			t.Errorf("help lacks --%s", flag)
		}
		if !strings.Contains(help, "[$"+envName(flag)+"]") {
			t.Errorf("help lacks $%s", envName(flag))
		}
	}
	if !strings.Contains(help, "(default 8000)") {
		t.Errorf("help does not show the port default:\n%s", help)
	}
}

// The chat page is on by default and can be turned off from each source.
func TestServePlayground(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  string
		yaml string
	}{
		{"flag", []string{"--playground=false"}, "", ""},
		{"env", nil, "false", ""},
		{"file", nil, "", "playground: false\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--model", "m"}, tc.args...)
			if tc.env != "" {
				t.Setenv("PARROT_PLAYGROUND", tc.env)
			}
			if tc.yaml != "" {
				args = append(args, "--config", writeYAML(t, tc.yaml))
			}
			c, err := ParseServe(args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Playground {
				t.Errorf("%v: playground still on", tc.args)
			}
		})
	}
}

// --metrics-compat is vllm by default (the vLLM-named routing gauges are
// exported), none turns them off from each source, and its help names the
// missing KV series so the gap shows in --help too.
func TestServeMetricsCompat(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  string
		yaml string
		want string
	}{
		{"default", nil, "", "", "vllm"},
		{"flag", []string{"--metrics-compat", "none"}, "", "", "none"},
		{"flag case", []string{"--metrics-compat", "VLLM"}, "", "", "vllm"},
		{"env", nil, "none", "", "none"},
		{"file", nil, "", "metrics-compat: none\n", "none"},
		{"flag over env", []string{"--metrics-compat", "vllm"}, "none", "", "vllm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--model", "m"}, tc.args...)
			if tc.env != "" {
				t.Setenv("PARROT_METRICS_COMPAT", tc.env)
			}
			if tc.yaml != "" {
				args = append(args, "--config", writeYAML(t, tc.yaml))
			}
			c, err := ParseServe(args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.MetricsCompat != tc.want {
				t.Errorf("MetricsCompat = %q, want %q", c.MetricsCompat, tc.want)
			}
		})
	}
	var out bytes.Buffer
	if _, err := ParseServe([]string{"--help"}, &out); !errors.Is(err, ErrHelp) {
		t.Fatal(err)
	}
	for _, s := range []string{"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:lora_requests_info", "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total", `(default "vllm")`} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("--metrics-compat help lacks %q", s)
		}
	}
}
