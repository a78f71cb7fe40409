// Command serve serves a Llama-family model over the OpenAI HTTP API.
//
//	go run ./cmd/serve --model unsloth/Llama-3.2-1B-Instruct-bnb-4bit
//	go run ./cmd/serve --model testdata/stories260K --quantize none
//
// See `serve --help` for the flags (and their PARROT_* variables).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parrot-llm/parrot/adapters"
	"github.com/parrot-llm/parrot/config"
	"github.com/parrot-llm/parrot/kernels/backends"
	"github.com/parrot-llm/parrot/openai"
	"github.com/parrot-llm/parrot/openai/playground"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default: a second one kills.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run serves until ctx ends (a signal), then drains; it returns the exit
// status: 0 after a clean drain, 1 on a failure, 2 on bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := config.ParseServe(args, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "serve: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg config.Serve, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve listens at once (so /health answers 503 while the model loads),
// loads the model, serves it, and drains on ctx's end.
func serve(ctx context.Context, cfg config.Serve, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	vllmCompat := cfg.MetricsCompat == "vllm"
	metrics, err := openai.NewMetrics(reg, openai.MetricsOptions{VLLMCompat: vllmCompat})
	if err != nil {
		return err
	}
	opts := openai.Options{APIKeys: cfg.APIKeys, MaxBodyBytes: cfg.MaxRequestBodyBytes, Logger: log, Gatherer: reg,
		LoRAAdmin: cfg.EnableLoRAAdmin, ReadBodyTimeout: noneIfZero(cfg.ReadBodyTimeout), WriteTimeout: noneIfZero(cfg.WriteTimeout)}
	if cfg.Playground {
		opts.Playground = playground.Handler()
	}
	srv := openai.New(opts)

	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return err
	}
	// ReadTimeout and WriteTimeout stay 0: they would bound whole requests,
	// cutting long streams; openai.Server sets per-body and per-write
	// deadlines instead.
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout}
	if cfg.IdleTimeout == 0 {
		httpSrv.IdleTimeout = -1 // 0 would mean ReadHeaderTimeout's value to net/http
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "api_keys", len(cfg.APIKeys))

	eng, pool, closeAll, err := load(ctx, cfg, log, metrics.Observer(cfg.ServedModelNames[0]), reg)
	if err != nil {
		_ = httpSrv.Close()
		return err
	}
	defer closeAll()
	boundHeap(log)
	base, err := openai.NewStaticResolver(eng, cfg.ServedModelNames...)
	if err != nil {
		_ = httpSrv.Close()
		return err
	}
	if pool != nil {
		srv.SetModels(openai.NewLoRAResolver(base, eng, pool))
	} else {
		srv.SetModels(base)
	}
	log.Info("ready", "served_model_names", cfg.ServedModelNames, "max_model_len", eng.MaxModelLen())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		_ = eng.Close(context.Background())
		return fmt.Errorf("http server: %w", err)
	}
	return drain(cfg, log, srv, httpSrv, eng)
}

// noneIfZero maps a flag's 0 ("no limit") to openai.Options' -1.
func noneIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// drain stops accepting requests, lets in-flight ones finish (up to the
// shutdown timeout, then cuts them), and stops the engine.
func drain(cfg config.Serve, log *slog.Logger, srv *openai.Server, httpSrv *http.Server, eng *engine.Engine) error {
	log.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Keep listening while in-flight requests finish, answering new ones 503
	// with Retry-After; then close the listener and the idle connections.
	if err := srv.Drain(dctx); err != nil {
		log.Warn("drain timed out with requests in flight", "err", err)
	}
	if err := httpSrv.Shutdown(dctx); err != nil {
		log.Warn("drain timed out: closing the remaining connections", "err", err)
		_ = httpSrv.Close() // cancels the requests' contexts, which stops their sequences
	}
	ectx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := eng.Close(ectx); err != nil {
		return fmt.Errorf("stopping the engine: %w", err)
	}
	log.Info("stopped")
	return nil
}

// load finds the model (downloading it from the Hub if needed), loads it on
// the configured backend, sets up its LoRA adapters if any are configured
// (pool is nil otherwise) and starts its engine. closeAll releases the
// backend and the adapter watcher.
func load(ctx context.Context, cfg config.Serve, log *slog.Logger, obs engine.Observer, reg prometheus.Registerer) (
	eng *engine.Engine, pool *adapters.Pool, closeAll func(), err error) {
	dir, err := modelDir(ctx, cfg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	backend, closeBackend, err := backends.New(cfg.Backend, cfg.Threads)
	if err != nil {
		return nil, nil, nil, err
	}
	if b, ok := backend.(interface{ SetInt8Activations(bool) }); ok {
		b.SetInt8Activations(cfg.NF4Decode == "int8")
	}
	if b, ok := backend.(interface{ SetInt8Prefill(bool) }); ok {
		b.SetInt8Prefill(cfg.NF4Prefill == "int8")
	}
	if b, ok := backend.(interface{ SetLoRAFloat32(bool) }); ok {
		b.SetLoRAFloat32(cfg.LoRADtype == "float32")
	}
	start := time.Now()
	log.Info("loading model", "dir", dir, "quantize", cfg.Quantize, "backend", cfg.Backend, "nf4_decode", cfg.NF4Decode, "nf4_prefill", cfg.NF4Prefill)
	loaded, err := llama.Load(dir, llama.LoadOptions{Quantize: cfg.Quantize, Backend: backend, ChatTemplate: cfg.ChatTemplate, LMHead8Bit: cfg.LMHead8Bit, LMHead4Bit: cfg.LMHead4Bit})
	if err != nil {
		closeBackend()
		return nil, nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		closeBackend()
		return nil, nil, nil, fmt.Errorf("interrupted while loading: %w", err)
	}
	kvBF16 := kvCacheBF16(cfg.KVCacheDtype, loaded.Model.Config.DType)
	if b, ok := backend.(interface{ SetKVBF16(bool) }); ok {
		b.SetKVBF16(kvBF16) // before the engine makes its pool
	} else {
		kvBF16 = false
	}
	// The pool enables LoRA slots on the model, so it comes before the engine.
	pool, closeAdapters, err := setupAdapters(cfg, loaded.Model, log, reg)
	if err != nil {
		closeBackend()
		return nil, nil, nil, err
	}
	closeAll = func() { closeAdapters(); closeBackend() }
	kvBytes, kvFrom := kvCacheBudget(cfg, kvCacheNeed(cfg, loaded.Model))
	eng, err = engine.NewEngine(loaded, engine.Options{
		MaxRunning:         cfg.MaxNumSeqs,
		MaxRunningPerGroup: cfg.MaxNumSeqsPerReq,
		MaxWaiting:         cfg.MaxWaitingRequests,
		MaxBatchToken:      cfg.MaxNumBatchedTokens,
		MaxPrefillPerSeq:   cfg.LongPrefillTokens,
		MaxModelLen:        cfg.MaxModelLen,
		KVCacheBytes:       kvBytes,
		Observer:           obs,
	})
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("KV cache (--kv-cache-memory): %w", err)
	}
	kv := eng.KVCache()
	log.Info("KV cache", "bytes", kv.Bytes, "bfloat16", kvBF16, "budget", kvFrom, "blocks", kv.Blocks, "block_size", kv.BlockSize,
		"positions", kv.Positions, "max_model_len", eng.MaxModelLen(),
		"full_length_sequences", kv.Positions/max(1, eng.MaxModelLen()))
	if cfg.MaxModelLen > eng.MaxModelLen() {
		log.Warn("--max-model-len is above what the model or the KV cache holds: requests longer than max_model_len are refused",
			"requested", cfg.MaxModelLen, "max_model_len", eng.MaxModelLen(), "model_max_position_embeddings", loaded.Model.Config.MaxPos,
			"kv_cache_positions", kv.Positions)
	}
	log.Info("model loaded", "seconds", time.Since(start).Seconds(), "chat_template", loaded.Template != nil)
	return eng, pool, closeAll, nil
}

// setupAdapters registers the --adapters-dir and --lora adapters, watches the
// directory for changes and creates the slot pool. Without adapters it
// returns a nil pool.
func setupAdapters(cfg config.Serve, model *llama.Model, log *slog.Logger, reg prometheus.Registerer) (*adapters.Pool, func(), error) {
	if cfg.AdaptersDir == "" && len(cfg.LoRAs) == 0 {
		return nil, func() {}, nil
	}
	registry, err := adapters.NewRegistry(cfg.AdaptersDir, cfg.ServedModelNames...)
	if err != nil {
		return nil, nil, err
	}
	for _, spec := range cfg.LoRAs {
		name, path, err := adapters.ParseLoRASpec(spec)
		if err != nil {
			return nil, nil, err
		}
		if err := registry.Add(name, path); err != nil {
			return nil, nil, err
		}
	}
	metrics := adapters.NewMetrics(adapters.MetricsOptions{VLLMCompat: cfg.MetricsCompat == "vllm"})
	if err := metrics.Register(reg); err != nil {
		return nil, nil, err
	}
	pool, err := adapters.NewPool(model, cfg.MaxLoRAs, cfg.MaxLoRARank, cfg.LoRAMemoryBudget, registry,
		adapters.PoolOptions{Metrics: metrics, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	closeWatcher := func() {}
	if cfg.AdaptersDir != "" {
		w := adapters.Watch(registry, adapters.WatchOptions{Logger: log})
		closeWatcher = func() { _ = w.Close() }
	}
	log.Info("LoRA adapters enabled", "dir", cfg.AdaptersDir, "slots", cfg.MaxLoRAs, "max_rank", cfg.MaxLoRARank,
		"adapters", len(registry.List()), "admin", cfg.EnableLoRAAdmin)
	return pool, closeWatcher, nil
}

// heapHeadroom is how far the Go heap may grow past the weights, KV pool,
// adapter slots and step buffers (the engine reserves those at start):
// backend scratch, request state and garbage.
const heapHeadroom = 256 << 20

// boundHeap sets the Go runtime's soft memory limit to what is allocated
// now (weights, KV pool, LoRA slots, step buffers) plus heapHeadroom, unless GOMEMLIMIT
// says otherwise. The garbage collector's default pacing lets garbage grow
// as large as the live heap before collecting, and here the live heap is
// gigabytes of weights and KV blocks: without a limit a busy server's
// resident memory would reach twice that.
func boundHeap(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	// What is live, not the garbage of loading (a replaced bf16 table, the
	// conversions' buffers), and that garbage's pages given back to the
	// system now rather than by the background scavenger over minutes.
	debug.FreeOSMemory()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	limit := int64(ms.HeapAlloc) + int64(ms.StackSys) + heapHeadroom
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit", "bytes", limit, "heap_alloc", ms.HeapAlloc)
}

// kvCacheBudget is the KV pool's size in bytes: --kv-cache-memory's bytes,
// or its fraction of the memory available now (the weights are loaded), at
// most need (what --max-num-seqs sequences of the full context take: a
// small model does not claim half the machine).
func kvCacheBudget(cfg config.Serve, need int64) (int64, string) {
	if cfg.KVCacheBytes > 0 {
		return cfg.KVCacheBytes, "--kv-cache-memory"
	}
	avail, err := memAvailable("/")
	if err != nil {
		// Not Linux, or no /proc: a modest pool rather than a guess at the machine.
		return min(need, 1<<30), "1 GiB at most (available memory unknown: " + err.Error() + ")"
	}
	b := int64(cfg.KVCacheFraction * float64(avail))
	if need < b {
		return need, fmt.Sprintf("--max-num-seqs × the context (less than %.2f of %d available bytes)", cfg.KVCacheFraction, avail)
	}
	return b, fmt.Sprintf("%.2f of %d available bytes", cfg.KVCacheFraction, avail)
}

// kvCacheBF16 resolves --kv-cache-dtype: auto keeps a 16-bit model's KV
// cache in bfloat16 (vLLM's auto takes the model's dtype) and a float32
// one's in float32.
func kvCacheBF16(flag, modelDType string) bool {
	switch flag {
	case "bfloat16":
		return true
	case "auto":
		return modelDType == "bfloat16" || modelDType == "float16"
	}
	return false
}

// kvCacheNeed is the KV memory of --max-num-seqs sequences of the full
// context length.
func kvCacheNeed(cfg config.Serve, m *llama.Model) int64 {
	ctx := m.Config.MaxPos
	if cfg.MaxModelLen > 0 {
		ctx = min(ctx, cfg.MaxModelLen)
	}
	return int64(cfg.MaxNumSeqs) * int64(ctx) * m.KVShape().BytesPerPosition()
}

// memAvailable is the memory this process may still use, in bytes: the
// kernel's MemAvailable, or less when a cgroup (a container's memory
// limit) leaves less, since /proc/meminfo shows the whole machine's.
// root is "/" (tests pass a fake tree).
func memAvailable(root string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0, err
	}
	avail := int64(-1)
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			if f := strings.Fields(rest); len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					avail = kb << 10
				}
			}
		}
	}
	if avail < 0 {
		return 0, errors.New("no MemAvailable in /proc/meminfo")
	}
	// cgroup v2, then v1: the limit minus what the group uses now.
	for _, files := range [][2]string{
		{"sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory.current"},
		{"sys/fs/cgroup/memory/memory.limit_in_bytes", "sys/fs/cgroup/memory/memory.usage_in_bytes"},
	} {
		limit, err1 := readInt(filepath.Join(root, files[0]))
		used, err2 := readInt(filepath.Join(root, files[1]))
		if err1 == nil && err2 == nil && limit > 0 && limit < 1<<60 { // "max" or v1's huge "no limit"
			avail = min(avail, max(0, limit-used))
			break
		}
	}
	return avail, nil
}

// readInt reads a file holding one integer.
func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}
