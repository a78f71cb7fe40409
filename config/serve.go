// Package config reads the settings of the parrot commands from flags,
// environment variables (prefix PARROT_) and a YAML file, in viper's
// precedence: a flag given on the command line wins over the environment,
// which wins over the file, which wins over the defaults. It is the only
// package that uses viper; commands get plain, validated structs.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of the environment variables: --max-model-len is
// PARROT_MAX_MODEL_LEN.
const EnvPrefix = "PARROT"

// ErrHelp is returned when --help was asked for (the usage was printed).
var ErrHelp = pflag.ErrHelp

// Serve is the configuration of `parrot serve`.
type Serve struct {
	ModelConfig
	ServedModelNames []string // names clients use; default [Model]
	Host             string   // "" = all interfaces
	Port             int
	LMHead8Bit       bool   // keep an 8-bit copy of the lm_head for faster decoding
	LMHead4Bit       bool   // keep it (and a tied embedding) in NF4 instead
	NF4Decode        string // "int8": NF4 decode products take int8 activations; "float32": exact
	NF4Prefill       string // the same for prompt batches (more than 8 tokens)
	MaxModelLen      int    // 0 = the model's max_position_embeddings
	APIKeys          []string
	AdaptersDir      string
	LoRAs            []string // explicit adapters, "name=path"
	MaxLoRAs         int      // resident adapter slots
	MaxLoRARank      int      // largest adapter rank a slot holds
	LoRADtype        string   // "bfloat16" or "float32": how the cpu backend stores resident adapters
	LoRAMemoryBudget int64    // bytes for adapter slots; 0 = no limit
	EnableLoRAAdmin  bool     // POST /v1/load_lora_adapter, /v1/unload_lora_adapter
	Playground       bool     // the chat page at /
	MetricsCompat    string   // "vllm": also export vLLM's names of the routing gauges; "none"

	MaxNumSeqs          int   // sequences decoded together
	MaxNumSeqsPerReq    int   // sequences of one request decoded together; 0 = MaxNumSeqs/4
	MaxNumBatchedTokens int   // tokens per forward pass
	LongPrefillTokens   int   // prompt tokens one sequence runs per step; 0 = half of MaxNumBatchedTokens
	KVCacheBytes        int64 // KV pool budget in bytes; 0 = KVCacheFraction of the memory available
	KVCacheFraction     float64
	KVCacheDtype        string // "auto", "bfloat16" or "float32": the cpu backend's KV storage
	MaxWaitingRequests  int    // queued requests before 429
	MaxRequestBodyBytes int64  // request body limit
	ShutdownTimeout     time.Duration

	ReadHeaderTimeout time.Duration // time to receive a request's headers
	ReadBodyTimeout   time.Duration // time to receive a request's body
	WriteTimeout      time.Duration // time a client may take to accept each write (each streamed event)
	IdleTimeout       time.Duration // how long an idle keep-alive connection stays open

	LogLevel  string // debug, info, warn, error
	LogFormat string // text or json

	ConfigFile string // the YAML file read, if any
}

// serveFlags defines the flags; the usage strings are the --help text.
func serveFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SortFlags = false
	commonFlags(fs, "max-model-len: 2048",
		"model to serve: a local Hugging Face model directory, or a Hub id org/name[@revision] (downloaded into the Hugging Face cache)",
		"weights of the projections: nf4 (4-bit, quantized on load if needed) or none (float32, for reference checks)")
	fs.StringSlice("served-model-name", nil, "name(s) clients use for the model; repeat or comma-separate for aliases; default the --model Hub id, or the name of a local model directory (its path is never shown to clients)")
	fs.String("host", "", "address to listen on; empty = all interfaces")
	fs.Int("port", 8000, "port to listen on")
	fs.Bool("lm-head-8bit", false, "store the lm_head in 8 bits (blocks of 32): a quarter of float32's decode bandwidth, slightly different logits")
	fs.Bool("lm-head-4bit", false, "store the lm_head in NF4 (blocks of 64), and a tied embedding table with it: an eighth of float32's decode bandwidth and the bf16 table's memory freed, "+
		"as llama.cpp's pure Q4_0 files store them; logits move more than with --lm-head-8bit")
	fs.String("nf4-decode", "int8", "how the cpu backend multiplies NF4 weights in decode steps (up to 8 tokens): int8 quantizes each 64-value block of activations to 8 bits and "+
		"takes integer dot products with the 4-bit codes (llama.cpp's IQ4_NL x Q8_0 scheme), which runs at memory speed, within half an 8-bit step of the exact product; "+
		"float32 computes exactly, at about half the speed")
	fs.String("nf4-prefill", "int8", "the same for prompt batches (more than 8 tokens): int8 quantizes the same way (on CPUs with AVX-512 VNNI, with --nf4-decode int8 too, "+
		"the weights are repacked at load into 16-row panels that one integer kernel multiplies by up to 12 tokens at a time: 2-3x float32's prompt speed); float32 computes exactly")
	fs.Int("max-model-len", 0, "context length in tokens; 0 = the model's max_position_embeddings")
	fs.StringSlice("api-key", nil, "API key clients must send as 'Authorization: Bearer KEY'; repeat (or comma-separate) for several; none = no auth")
	fs.String("adapters-dir", "", "directory of LoRA adapters to serve (one PEFT adapter per subdirectory, named by it; watched: new or changed adapters are served without a restart)")
	fs.StringSlice("lora", nil, "a LoRA adapter to serve, as name=path; repeat for several")
	fs.Int("max-loras", 4, "adapters resident at once (slots); others load on demand, evicting the least recently used idle one")
	fs.Int("max-lora-rank", 16, "largest LoRA rank served")
	fs.String("lora-dtype", "bfloat16", "how the cpu backend stores resident LoRA adapters: bfloat16 (half the memory and the bytes each decode step reads; "+
		"the adapter's values rounded to nearest, as vLLM holds adapters of a bf16 model) or float32 (exactly the file's values)")
	fs.Int64("lora-memory-budget", 0, "bytes the adapter slots may use; 0 = no limit (the slot count alone bounds them)")
	fs.Bool("enable-lora-admin", false, "enable POST /v1/load_lora_adapter and /v1/unload_lora_adapter (behind the API key)")
	fs.Bool("playground", true, "serve the chat playground at / (static files; its API calls need the API key like any client's); --playground=false to turn it off")
	fs.String("metrics-compat", "vllm", "also export, on /metrics, the series a Gateway API Inference Extension endpoint picker (or llm-d, AIBrix) scrapes to choose a replica, "+
		"under vLLM's names and labels: vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc, vllm:lora_requests_info, "+
		"vllm:num_preemptions_total and vllm:prefix_cache_queries_total/hits_total, from the same sources as their parrot: twins "+
		"(vllm), or not (none). The default is vllm: the duplicates are a few series and no vLLM runs in this process, so nothing is counted twice")
	fs.Int("max-num-seqs", 16, "most sequences decoded together in one step")
	fs.Int("max-num-seqs-per-request", 0, "most sequences of one request (its n choices and prompts) decoded together, so a large n does not hold back the requests queued behind it; 0 = a quarter of --max-num-seqs")
	fs.Int("max-num-batched-tokens", 512, "most tokens in one forward pass (prompt chunks included)")
	fs.Int("long-prefill-token-threshold", 0, "most prompt tokens one sequence runs in one forward pass, so that one long prompt does not take the whole --max-num-batched-tokens; 0 = half of it")
	fs.String("kv-cache-memory", "0.5", "memory for the KV cache pool, allocated at start: bytes with a unit (512MiB, 1GiB, 2GB) or a fraction of the memory available after the weights are loaded (0.5; a container's cgroup memory limit counts); "+
		"--max-model-len is lowered to what the pool holds, and requests wait (or running ones are preempted and recomputed later) when it is full")
	fs.String("kv-cache-dtype", "auto", "how the cpu backend stores the KV cache: bfloat16 (half the memory per position and half the bytes decode attention reads; keys and values rounded to nearest), "+
		"float32 (exact), or auto: bfloat16 for a model whose config.json torch_dtype is bfloat16 or float16, float32 otherwise (vLLM's auto: the model's dtype)")
	fs.Int("max-waiting-requests", 256, "most queued requests; more are refused with 429 and Retry-After")
	fs.Int64("max-request-body-bytes", 4<<20, "largest accepted request body, in bytes")
	fs.Duration("shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may run before they are cut (new requests get 503 meanwhile)")
	fs.Duration("read-header-timeout", 10*time.Second, "time a client may take to send a request's headers; 0 = no limit")
	fs.Duration("read-body-timeout", 30*time.Second, "time a client may take to send a request's body; 0 = no limit")
	fs.Duration("write-timeout", 30*time.Second, "time a client may take to accept each write of a response (each event of a stream): a stream whose reader stalls this long is cancelled and its memory freed; 0 = no limit")
	fs.Duration("idle-timeout", 60*time.Second, "how long an idle keep-alive connection stays open; 0 = no limit")
	fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.String("log-format", "text", "log format: text or json")
	envFlags(fs)
	return fs
}

func envName(flag string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ServeUsage writes the --help text.
func ServeUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage: serve --model MODEL [flags]

Serves MODEL over an OpenAI-compatible HTTP API (/v1/chat/completions,
/v1/completions, /v1/models, /tokenize, /detokenize, /health, /livez, /metrics).
%s`, flagsHelp(serveFlags()))
}

// ParseServe reads the serve configuration from args (without the program
// name), the environment and the --config file. --help prints the usage to
// out and returns ErrHelp.
func ParseServe(args []string, out io.Writer) (Serve, error) {
	g, err := parseArgs(serveFlags(), args, out, ServeUsage, "give the model with --model")
	if err != nil {
		return Serve{}, err
	}
	c := Serve{
		ConfigFile:          g.str("config"),
		ModelConfig:         g.modelConfig(),
		ServedModelNames:    g.list("served-model-name"),
		Host:                g.str("host"),
		Port:                g.int("port"),
		LMHead8Bit:          g.bool("lm-head-8bit"),
		LMHead4Bit:          g.bool("lm-head-4bit"),
		NF4Decode:           strings.ToLower(g.str("nf4-decode")),
		NF4Prefill:          strings.ToLower(g.str("nf4-prefill")),
		MaxModelLen:         g.int("max-model-len"),
		APIKeys:             g.list("api-key"),
		AdaptersDir:         g.str("adapters-dir"),
		LoRAs:               g.list("lora"),
		MaxLoRAs:            g.int("max-loras"),
		MaxLoRARank:         g.int("max-lora-rank"),
		LoRADtype:           strings.ToLower(g.str("lora-dtype")),
		KVCacheDtype:        strings.ToLower(g.str("kv-cache-dtype")),
		LoRAMemoryBudget:    g.int64("lora-memory-budget"),
		EnableLoRAAdmin:     g.bool("enable-lora-admin"),
		Playground:          g.bool("playground"),
		MetricsCompat:       strings.ToLower(g.str("metrics-compat")),
		MaxNumSeqs:          g.int("max-num-seqs"),
		MaxNumSeqsPerReq:    g.int("max-num-seqs-per-request"),
		MaxNumBatchedTokens: g.int("max-num-batched-tokens"),
		LongPrefillTokens:   g.int("long-prefill-token-threshold"),
		MaxWaitingRequests:  g.int("max-waiting-requests"),
		MaxRequestBodyBytes: g.int64("max-request-body-bytes"),
		ShutdownTimeout:     g.duration("shutdown-timeout"),
		ReadHeaderTimeout:   g.duration("read-header-timeout"),
		ReadBodyTimeout:     g.duration("read-body-timeout"),
		WriteTimeout:        g.duration("write-timeout"),
		IdleTimeout:         g.duration("idle-timeout"),
		LogLevel:            strings.ToLower(g.str("log-level")),
		LogFormat:           strings.ToLower(g.str("log-format")),
	}
	if g.err == nil {
		c.KVCacheBytes, c.KVCacheFraction, g.err = ParseMemory(g.str("kv-cache-memory"))
		if g.err != nil {
			g.err = fmt.Errorf("--kv-cache-memory (or $%s or the config file): %w", envName("kv-cache-memory"), g.err)
		}
	}
	if g.err != nil {
		return Serve{}, g.err
	}
	if len(c.ServedModelNames) == 0 && c.Model != "" {
		c.ServedModelNames = []string{defaultServedName(c.Model)}
	}
	if err := c.Validate(); err != nil {
		return Serve{}, err
	}
	return c, nil
}

// defaultServedName is the name clients use when --served-model-name is not
// given: a Hub id as it is (as vLLM does), but only the last element of a
// local directory's path, so the server's paths never reach clients or the
// metrics' labels.
func defaultServedName(model string) string {
	if st, err := os.Stat(model); err == nil && st.IsDir() {
		if abs, err := filepath.Abs(model); err == nil {
			return filepath.Base(abs)
		}
	}
	return model
}

// flagsHelp is the part of --help shared by the commands: where settings
// come from, then the flags.
func flagsHelp(fs *pflag.FlagSet) string {
	return `
Every flag can also be set by an environment variable (shown in brackets;
lists comma-separated) or a key of the --config YAML file. A flag on the
command line wins over the environment, which wins over the file.

Flags:
` + fs.FlagUsages()
}

// parseArgs parses a command's flags (--help prints usage to out and
// returns ErrHelp; a positional argument is refused with hint) and layers
// them over the environment and the --config file.
func parseArgs(fs *pflag.FlagSet, args []string, out io.Writer, usage func(io.Writer), hint string) (*getter, error) {
	fs.SetOutput(io.Discard)
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w (see --help)", err)
	}
	if *help {
		usage(out)
		return nil, ErrHelp
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: %s (see --help)", fs.Arg(0), hint)
	}
	v, err := newViper(fs)
	if err != nil {
		return nil, err
	}
	return &getter{v: v}, nil
}

// newViper layers the flags, the environment and the config file.
func newViper(fs *pflag.FlagSet) (*viper.Viper, error) {
	v := viper.New()
	if err := v.BindPFlags(fs); err != nil {
		return nil, err
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	path := v.GetString("config")
	if path == "" {
		return v, nil
	}
	file := viper.New()
	file.SetConfigFile(path)
	file.SetConfigType("yaml")
	if err := file.ReadInConfig(); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("--config %s: file not found", path)
		}
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	settings := map[string]any{}
	for key, val := range file.AllSettings() {
		name := strings.ReplaceAll(key, "_", "-")
		if name == "config" || name == "help" || fs.Lookup(name) == nil {
			return nil, fmt.Errorf("--config %s: unknown setting %q (settings are named as the flags; see --help)", path, key)
		}
		settings[name] = val
	}
	if err := v.MergeConfigMap(settings); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	return v, nil
}

// getter reads typed values strictly (viper's Get* turn bad values into
// zeros); the first error is kept and names where the value came from.
type getter struct {
	v   *viper.Viper
	err error
}

func (g *getter) fail(key string, val any, want string) {
	if g.err == nil {
		g.err = fmt.Errorf("--%s (or $%s or the config file): %q is not %s", key, envName(key), fmt.Sprint(val), want)
	}
}

func (g *getter) str(key string) string {
	val := g.v.Get(key)
	s, err := cast.ToStringE(val)
	if err != nil {
		g.fail(key, val, "a string")
	}
	return strings.TrimSpace(s)
}

func (g *getter) int(key string) int {
	return int(g.int64(key))
}

func (g *getter) int64(key string) int64 {
	val := g.v.Get(key)
	n, err := cast.ToInt64E(val)
	if s, ok := val.(string); ok { // cast reads "010" as octal and "" as 0
		n, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	}
	if err != nil {
		g.fail(key, val, "an integer")
	}
	return n
}

func (g *getter) bool(key string) bool {
	val := g.v.Get(key)
	b, err := cast.ToBoolE(val)
	if s, ok := val.(string); ok {
		b, err = strconv.ParseBool(strings.TrimSpace(s))
	}
	if err != nil {
		g.fail(key, val, "true or false")
	}
	return b
}

func (g *getter) duration(key string) time.Duration {
	val := g.v.Get(key)
	var d time.Duration
	var err error
	switch x := val.(type) {
	case string:
		d, err = time.ParseDuration(strings.TrimSpace(x))
	default:
		d, err = cast.ToDurationE(val) // YAML numbers are nanoseconds to cast; require units
		if _, isNum := val.(int); isNum && d != 0 {
			err = errors.New("no unit")
		}
	}
	if err != nil {
		g.fail(key, val, "a duration such as 30s or 2m")
	}
	return d
}

// list reads a string list: repeated or comma-separated flags, a
// comma-separated environment variable, or a YAML list or string.
func (g *getter) list(key string) []string {
	val := g.v.Get(key)
	var items []string
	switch x := val.(type) {
	case nil:
	case string:
		items = strings.Split(x, ",")
	default:
		s, err := cast.ToStringSliceE(val)
		if err != nil {
			g.fail(key, val, "a list of strings")
			return nil
		}
		for _, e := range s {
			items = append(items, strings.Split(e, ",")...)
		}
	}
	out := items[:0]
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Validate checks ranges and choices, with messages that name the flag.
func (c *Serve) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c.ModelConfig.validate(bad)
	if c.Port < 1 || c.Port > 65535 {
		bad("--port %d: must be in 1..65535", c.Port)
	}
	if c.MaxModelLen < 0 {
		bad("--max-model-len %d: must be 0 (the model's) or positive", c.MaxModelLen)
	}
	if c.MaxNumSeqs < 1 {
		bad("--max-num-seqs %d: must be at least 1", c.MaxNumSeqs)
	}
	if c.MaxNumSeqsPerReq < 0 {
		bad("--max-num-seqs-per-request %d: must be 0 (a quarter of --max-num-seqs) or positive", c.MaxNumSeqsPerReq)
	}
	if c.MaxNumBatchedTokens < 1 {
		bad("--max-num-batched-tokens %d: must be at least 1", c.MaxNumBatchedTokens)
	}
	if c.LongPrefillTokens < 0 {
		bad("--long-prefill-token-threshold %d: must be 0 (half of --max-num-batched-tokens) or positive", c.LongPrefillTokens)
	}
	if c.MaxWaitingRequests < 1 {
		bad("--max-waiting-requests %d: must be at least 1", c.MaxWaitingRequests)
	}
	if c.MaxRequestBodyBytes < 1024 {
		bad("--max-request-body-bytes %d: must be at least 1024", c.MaxRequestBodyBytes)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"shutdown-timeout", c.ShutdownTimeout}, {"read-header-timeout", c.ReadHeaderTimeout}, {"read-body-timeout", c.ReadBodyTimeout},
		{"write-timeout", c.WriteTimeout}, {"idle-timeout", c.IdleTimeout}} {
		if d.v < 0 {
			bad("--%s %v: must not be negative", d.flag, d.v)
		}
	}
	if c.LMHead8Bit && c.LMHead4Bit {
		bad("--lm-head-8bit and --lm-head-4bit: choose one")
	}
	if !slices.Contains([]string{"int8", "float32"}, c.NF4Decode) {
		bad("--nf4-decode %q: must be int8 or float32", c.NF4Decode)
	}
	if !slices.Contains([]string{"int8", "float32"}, c.NF4Prefill) {
		bad("--nf4-prefill %q: must be int8 or float32", c.NF4Prefill)
	}
	if !slices.Contains([]string{"auto", "bfloat16", "float32"}, c.KVCacheDtype) {
		bad("--kv-cache-dtype %q: must be auto, bfloat16 or float32", c.KVCacheDtype)
	}
	if !slices.Contains([]string{"bfloat16", "float32"}, c.LoRADtype) {
		bad("--lora-dtype %q: must be bfloat16 or float32", c.LoRADtype)
	}
	if !slices.Contains([]string{"vllm", "none"}, c.MetricsCompat) {
		bad("--metrics-compat %q: must be vllm or none", c.MetricsCompat)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("--log-level %q: must be debug, info, warn or error", c.LogLevel)
	}
	if !slices.Contains([]string{"text", "json"}, c.LogFormat) {
		bad("--log-format %q: must be text or json", c.LogFormat)
	}
	seen := map[string]bool{}
	for _, n := range c.ServedModelNames {
		if seen[n] {
			bad("--served-model-name %q is given twice", n)
		}
		seen[n] = true
	}
	if c.AdaptersDir != "" {
		if st, err := os.Stat(c.AdaptersDir); err != nil || !st.IsDir() {
			bad("--adapters-dir %q: not a directory", c.AdaptersDir)
		}
	}
	if c.MaxLoRAs < 1 {
		bad("--max-loras %d: must be at least 1", c.MaxLoRAs)
	}
	if c.MaxLoRARank < 1 || c.MaxLoRARank > 512 {
		bad("--max-lora-rank %d: must be in 1..512", c.MaxLoRARank)
	}
	if c.LoRAMemoryBudget < 0 {
		bad("--lora-memory-budget %d: must be 0 (no limit) or positive", c.LoRAMemoryBudget)
	}
	for _, spec := range c.LoRAs {
		name, path, ok := strings.Cut(spec, "=")
		if !ok || name == "" || path == "" {
			bad("--lora %q: want name=path", spec)
		}
	}
	if c.EnableLoRAAdmin && c.AdaptersDir == "" {
		bad("--enable-lora-admin needs --adapters-dir: admin loads are confined to it")
	}
	return errors.Join(errs...)
}

// Addr is the listen address, host:port.
func (c *Serve) Addr() string {
	host := c.Host
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // IPv6 literal
	}
	return fmt.Sprintf("%s:%d", host, c.Port)
}
