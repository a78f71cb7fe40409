// Command bench measures an OpenAI-compatible server under load, in the
// spirit of vLLM's `vllm bench serve` (benchmarks/benchmark_serving.py):
//
//	bench --url http://127.0.0.1:8000 --concurrency 8 --num-requests 64
//	bench --serve-bin ./serve --serve-args "--model testdata/stories260K --quantize none" \
//	    --endpoint /v1/completions --prompt-tokens 64 --output-tokens 64
//
// It first measures this machine's memory bandwidth (kernels/cpu's
// MeasureBandwidth), then, when given --serve-bin, starts serve on a free
// loopback port (unless --url names one), waits for GET /health to answer
// 200 and samples the process's VmRSS/VmHWM every 100 ms. --concurrency
// clients then play --num-requests conversations of --turns streamed
// requests each (chat or completions), with ignore_eos and max_tokens set
// so that every reply has the drawn length, and the run is summarised as
// one JSON object on stdout (and in --out).
//
// Prompts are made of common English words. When the server has vLLM's
// POST /tokenize, each prompt is fitted to its drawn token count (the
// user text alone: the chat template's tokens come on top); otherwise
// 1.33 tokens per word is assumed, and the prompt lengths are only
// approximate. The server's usage (prompt_tokens) says what was sent.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/parrot-llm/parrot/kernels/cpu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const (
	chatEndpoint       = "/v1/chat/completions"
	completionEndpoint = "/v1/completions"
)

type options struct {
	url, serveBin, serveArgs string
	startupTimeout           time.Duration
	endpoint, model, apiKey  string
	adapters                 []string

	concurrency, numRequests, turns int
	promptTokens, outputTokens      int
	rangeRatio, temperature         float64
	sharedPrefixTokens              int
	requestTimeout                  time.Duration

	threads, bandwidthMiB int
	seed                  uint64
	out                   string
}

// parseFlags reads and checks the flags; the error says which one is wrong.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "", "server to benchmark, http://host:port; with --serve-bin, where the started serve listens (default: a free loopback port, passed to it as --host/--port)")
	fs.StringVar(&o.serveBin, "serve-bin", "", "serve binary to start (and stop with SIGTERM at the end); its memory is sampled")
	fs.StringVar(&o.serveArgs, "serve-args", "", "arguments for --serve-bin, split at spaces (no quoting)")
	fs.DurationVar(&o.startupTimeout, "startup-timeout", 5*time.Minute, "how long the started serve may take to answer /health with 200")
	fs.StringVar(&o.endpoint, "endpoint", chatEndpoint, "API to load: "+chatEndpoint+" or "+completionEndpoint)
	fs.StringVar(&o.model, "model", "", "model name to send (default: the first of GET /v1/models)")
	adapters := fs.String("adapters", "", "comma-separated LoRA adapter names: conversation i is sent with model adapters[i % len]")
	fs.StringVar(&o.apiKey, "api-key", os.Getenv("OPENAI_API_KEY"), "Bearer token to send (default $OPENAI_API_KEY)")
	fs.IntVar(&o.concurrency, "concurrency", 4, "concurrent streaming clients")
	fs.IntVar(&o.numRequests, "num-requests", 32, "conversations to play (requests sent = num-requests × turns)")
	fs.IntVar(&o.turns, "turns", 1, "requests per conversation: each turn resends the conversation so far (earlier replies included) plus a new user message")
	fs.IntVar(&o.promptTokens, "prompt-tokens", 256, "tokens of each user message (the shared prefix and the chat template come on top)")
	fs.IntVar(&o.outputTokens, "output-tokens", 128, "tokens generated per request (max_tokens, with ignore_eos)")
	fs.Float64Var(&o.rangeRatio, "range-ratio", 0, "draw each length uniformly from [len·(1−r), len·(1+r)], 0 ≤ r < 1 (0: fixed lengths)")
	fs.IntVar(&o.sharedPrefixTokens, "shared-prefix-tokens", 0, "tokens of a system message that every conversation starts with (0: none)")
	fs.Float64Var(&o.temperature, "temperature", 0, "sampling temperature")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 10*time.Minute, "limit on each request (0: none)")
	fs.IntVar(&o.threads, "threads", 2, "threads of the memory bandwidth probe")
	fs.IntVar(&o.bandwidthMiB, "bandwidth-mib", 256, "buffer the bandwidth probe streams, in MiB (0: skip the probe)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the random lengths and prompts")
	fs.StringVar(&o.out, "out", "", "also write the JSON report to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (all settings are flags)", fs.Arg(0))
	}
	for _, a := range strings.Split(*adapters, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.adapters = append(o.adapters, a)
		}
	}
	return o, o.check()
}

func (o *options) check() error {
	switch {
	case o.serveArgs != "" && o.serveBin == "":
		return errors.New("--serve-args needs --serve-bin")
	case o.url == "" && o.serveBin == "":
		return errors.New("give --url of a running server, or --serve-bin to start one")
	case o.endpoint != chatEndpoint && o.endpoint != completionEndpoint:
		return fmt.Errorf("--endpoint %q: use %s or %s", o.endpoint, chatEndpoint, completionEndpoint)
	case o.concurrency < 1:
		return fmt.Errorf("--concurrency %d: need at least 1", o.concurrency)
	case o.numRequests < 1:
		return fmt.Errorf("--num-requests %d: need at least 1", o.numRequests)
	case o.turns < 1:
		return fmt.Errorf("--turns %d: need at least 1", o.turns)
	case o.promptTokens < 1:
		return fmt.Errorf("--prompt-tokens %d: need at least 1", o.promptTokens)
	case o.outputTokens < 1:
		return fmt.Errorf("--output-tokens %d: need at least 1", o.outputTokens)
	case !(o.rangeRatio >= 0 && o.rangeRatio < 1):
		return fmt.Errorf("--range-ratio %v: need 0 ≤ r < 1", o.rangeRatio)
	case o.sharedPrefixTokens < 0:
		return fmt.Errorf("--shared-prefix-tokens %d: need 0 or more", o.sharedPrefixTokens)
	case !(o.temperature >= 0) || math.IsInf(o.temperature, 0):
		return fmt.Errorf("--temperature %v: need a finite value ≥ 0", o.temperature)
	case o.requestTimeout < 0 || o.startupTimeout <= 0:
		return errors.New("--request-timeout must be ≥ 0 and --startup-timeout > 0")
	case o.threads < 1:
		return fmt.Errorf("--threads %d: need at least 1", o.threads)
	case o.bandwidthMiB < 0 || o.bandwidthMiB > 1<<20:
		return fmt.Errorf("--bandwidth-mib %d: need 0 (skip) to %d", o.bandwidthMiB, 1<<20)
	}
	if o.url != "" {
		u, err := url.Parse(o.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--url %q: want http://host:port", o.url)
		}
		if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			return fmt.Errorf("--url %q: give the server's root, http://host:port, without a path (the endpoints are added)", o.url)
		}
		o.url = u.Scheme + "://" + u.Host
	}
	return nil
}

// report is the JSON the benchmark prints.
type report struct {
	Endpoint      string   `json:"endpoint"`
	Model         string   `json:"model"`  // the base model (/tokenize's)
	Models        []string `json:"models"` // the names requests were sent with
	Concurrency   int      `json:"concurrency"`
	Conversations int      `json:"conversations"`
	Turns         int      `json:"turns"`

	Requests  int      `json:"requests"`  // sent
	Completed int      `json:"completed"` // succeeded
	Errors    int      `json:"errors"`
	FirstErrs []string `json:"error_messages,omitempty"` // the first few distinct ones
	Skipped   int      `json:"skipped_turns,omitempty"`  // turns not sent after an earlier turn failed

	DurationS          float64 `json:"duration_s"`
	RequestsPerS       float64 `json:"requests_per_s"`
	OutputTokensPerS   float64 `json:"output_tokens_per_s"`
	TotalTokensPerS    float64 `json:"total_tokens_per_s"` // prompt + output
	TotalPromptTokens  int     `json:"total_prompt_tokens"`
	TotalOutputTokens  int     `json:"total_output_tokens"`
	MeanPromptTokens   float64 `json:"mean_prompt_tokens"`
	MeanOutputTokens   float64 `json:"mean_output_tokens"`
	CachedPromptTokens int     `json:"cached_prompt_tokens"`
	CachedFraction     float64 `json:"cached_prompt_fraction"`
	UsageMissing       int     `json:"usage_missing,omitempty"` // completed streams without a usage chunk (tokens counted as chunks)

	TTFT latency `json:"ttft_ms"`
	TPOT latency `json:"tpot_ms"` // per request: (E2E − TTFT) / (output tokens − 1)
	ITL  latency `json:"itl_ms"`
	E2E  latency `json:"e2e_ms"`

	Prompts promptFit `json:"prompts"`

	BandwidthGBps    float64 `json:"bandwidth_gbps,omitempty"`
	BandwidthThreads int     `json:"bandwidth_threads,omitempty"`
	BandwidthMiB     int     `json:"bandwidth_buffer_mib,omitempty"`

	Serve *serveReport `json:"serve,omitempty"`
}

// promptFit says how the prompt lengths were reached.
type promptFit struct {
	Method        string  `json:"method"` // "tokenize" or "assumed"
	TokensPerWord float64 `json:"tokens_per_word"`
	// |counted − drawn| per user message; with "assumed", nothing was
	// counted and they are absent.
	MeanAbsErrorTok *float64 `json:"mean_abs_error_tokens,omitempty"`
	MaxAbsErrorTok  *int     `json:"max_abs_error_tokens,omitempty"`
	SharedPrefixTok int      `json:"shared_prefix_tokens,omitempty"` // as counted
}

type serveReport struct {
	memory
	Exit string `json:"exit"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	rep, err := bench(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	b = append(b, '\n')
	stdout.Write(b)
	if o.out != "" {
		if err := os.WriteFile(o.out, b, 0o644); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
	}
	return 0
}

func bench(ctx context.Context, o *options, logs io.Writer) (*report, error) {
	rep := &report{Endpoint: o.endpoint, Concurrency: o.concurrency, Conversations: o.numRequests, Turns: o.turns}

	// The probe runs first, before serve takes the memory and the cores.
	if o.bandwidthMiB > 0 {
		be := cpu.New(o.threads)
		rep.BandwidthGBps = round3(cpu.MeasureBandwidth(be, o.bandwidthMiB<<20, 3))
		be.Close()
		rep.BandwidthThreads, rep.BandwidthMiB = o.threads, o.bandwidthMiB
	}

	base := o.url
	var srv *server
	if o.serveBin != "" {
		args := strings.Fields(o.serveArgs)
		if base == "" {
			port, err := freePort()
			if err != nil {
				return nil, err
			}
			base = "http://127.0.0.1:" + strconv.Itoa(port)
			args = append(args, "--host", "127.0.0.1", "--port", strconv.Itoa(port))
		}
		var err error
		if srv, err = startServer(o.serveBin, args, logs); err != nil {
			return nil, err
		}
		defer func() {
			if srv != nil { // stopped on an early return
				srv.stop(30 * time.Second)
			}
		}()
		if err := srv.waitHealthy(ctx, base, o.startupTimeout); err != nil {
			return nil, err
		}
	}

	c := &client{
		http: &http.Client{
			Timeout:   o.requestTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency, DisableCompression: true},
		},
		base: base, endpoint: o.endpoint, apiKey: o.apiKey,
	}
	model := o.model
	if model == "" {
		var err error
		if model, err = c.firstModel(ctx); err != nil {
			return nil, err
		}
	}
	models := o.adapters
	if len(models) == 0 {
		models = []string{model}
	}
	rep.Model, rep.Models = model, models

	// The workload is made before the load starts, so that its /tokenize
	// calls are not timed.
	p, err := newPrompter(ctx, c, model, o.seed)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if o.sharedPrefixTokens > 0 {
		rng := rand.New(rand.NewPCG(o.seed, math.MaxUint64-1))
		if prefix, rep.Prompts.SharedPrefixTok, err = p.text(rng, o.sharedPrefixTokens); err != nil {
			return nil, err
		}
	}
	convs, err := plan(o, p, models)
	if err != nil {
		return nil, err
	}
	rep.Prompts.fill(p, convs)

	results, skipped, dur := load(ctx, c, o, prefix, convs)
	rep.summarize(results, dur)
	rep.Skipped = skipped

	if srv != nil {
		mem, exit := srv.stop(30 * time.Second)
		srv = nil
		mem.PeakRSSMiB, mem.VmHWMMiB, mem.ReadyRSSMiB = round3(mem.PeakRSSMiB), round3(mem.VmHWMMiB), round3(mem.ReadyRSSMiB)
		rep.Serve = &serveReport{memory: mem, Exit: exit}
	}
	if ctx.Err() != nil {
		return nil, errors.New("interrupted")
	}
	return rep, nil
}

func (f *promptFit) fill(p *prompter, convs []conversation) {
	f.Method, f.TokensPerWord = "tokenize", round3(p.tokensPerWord)
	if p.count == nil {
		f.Method = "assumed"
		return
	}
	sum, n, most := 0, 0, 0
	for _, c := range convs {
		for _, t := range c.turns {
			e := abs(t.userTokens - t.targetTokens)
			sum, n, most = sum+e, n+1, max(most, e)
		}
	}
	meanErr := round3(float64(sum) / float64(max(n, 1)))
	f.MeanAbsErrorTok, f.MaxAbsErrorTok = &meanErr, &most
}

// load plays the conversations on o.concurrency clients, each taking the
// next conversation when it has finished one (vLLM's --max-concurrency
// with an infinite request rate), and returns the results of the requests
// sent, the number of turns skipped after a failed turn, and the time from
// the first request to the end of the last.
func load(ctx context.Context, c *client, o *options, prefix string, convs []conversation) ([]result, int, time.Duration) {
	next := make(chan int, len(convs))
	for i := range convs {
		next <- i
	}
	close(next)
	var (
		mu      sync.Mutex
		results []result
		skipped int
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range min(o.concurrency, len(convs)) {
		wg.Go(func() {
			for i := range next {
				rs := play(ctx, c, o, prefix, convs[i])
				mu.Lock()
				results = append(results, rs...)
				skipped += len(convs[i].turns) - len(rs)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return results, skipped, time.Since(start)
}

// play sends a conversation's turns in order, each with the replies to the
// earlier ones; a failed turn ends it (the next turn would need its reply).
func play(ctx context.Context, c *client, o *options, prefix string, conv conversation) []result {
	var msgs []message
	if prefix != "" {
		msgs = append(msgs, message{Role: "system", Content: prefix})
	}
	var results []result
	for _, t := range conv.turns {
		if ctx.Err() != nil {
			break
		}
		msgs = append(msgs, message{Role: "user", Content: t.user})
		body := map[string]any{
			"model":          conv.model,
			"stream":         true,
			"stream_options": map[string]any{"include_usage": true},
			"max_tokens":     t.outputTokens,
			"ignore_eos":     true,
			"temperature":    o.temperature,
		}
		if o.endpoint == chatEndpoint {
			body["messages"] = msgs
		} else {
			body["prompt"] = flatten(msgs)
		}
		r := c.generate(ctx, body)
		results = append(results, r)
		if r.err != "" {
			break
		}
		msgs = append(msgs, message{Role: "assistant", Content: r.reply})
	}
	return results
}

// flatten is a conversation as one completions prompt: the messages'
// texts, each user message on a new line, replies run on from their
// prompt as the model wrote them.
func flatten(msgs []message) string {
	var b strings.Builder
	for i, m := range msgs {
		if i > 0 && m.Role != "assistant" {
			b.WriteString("\n")
		}
		b.WriteString(m.Content)
	}
	return b.String()
}

// summarize computes the report's figures as vLLM's calculate_metrics
// does: throughputs over the whole run's duration, latencies over the
// successful requests, ITLs pooled over all of them.
func (r *report) summarize(results []result, dur time.Duration) {
	var ttft, tpot, itl, e2e []float64
	seen := map[string]bool{}
	r.Requests = len(results)
	for _, res := range results {
		if res.err != "" {
			r.Errors++
			if !seen[res.err] && len(r.FirstErrs) < 5 {
				seen[res.err] = true
				r.FirstErrs = append(r.FirstErrs, res.err)
			}
			continue
		}
		r.Completed++
		r.TotalPromptTokens += res.promptTokens
		r.TotalOutputTokens += res.outputTokens
		r.CachedPromptTokens += res.cachedTokens
		if !res.usageSeen {
			r.UsageMissing++
		}
		ttft = append(ttft, millis(res.ttft))
		e2e = append(e2e, millis(res.e2e))
		if res.outputTokens > 1 {
			tpot = append(tpot, millis(res.e2e-res.ttft)/float64(res.outputTokens-1))
		}
		for _, d := range res.itl {
			itl = append(itl, millis(d))
		}
	}
	s := dur.Seconds()
	r.DurationS = round3(s)
	if s > 0 {
		r.RequestsPerS = round3(float64(r.Completed) / s)
		r.OutputTokensPerS = round3(float64(r.TotalOutputTokens) / s)
		r.TotalTokensPerS = round3(float64(r.TotalPromptTokens+r.TotalOutputTokens) / s)
	}
	if r.Completed > 0 {
		r.MeanPromptTokens = round3(float64(r.TotalPromptTokens) / float64(r.Completed))
		r.MeanOutputTokens = round3(float64(r.TotalOutputTokens) / float64(r.Completed))
	}
	if r.TotalPromptTokens > 0 {
		r.CachedFraction = round3(float64(r.CachedPromptTokens) / float64(r.TotalPromptTokens))
	}
	r.TTFT, r.TPOT, r.ITL, r.E2E = summarize(ttft), summarize(tpot), summarize(itl), summarize(e2e)
}
