package playground_test

// The playground in a real browser: Debian's headless Chromium, driven with
// chromedp, against a real server on the bundled stories260K model with a
// random LoRA adapter (pirate-lora), and against a scripted fake server for
// hostile model output. CI installs Chromium (.ci/run); without it the test
// fails rather than skips.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/parrot-llm/parrot/adapters"
	"github.com/parrot-llm/parrot/adapters/adaptertest"
	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/openai"
	"github.com/parrot-llm/parrot/openai/playground"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
)

const (
	storiesDir = "../../testdata/stories260K"
	baseName   = "stories260K"
	adapter    = "pirate-lora"
	serverKey  = "playground-test-key"
)

// served is the model and adapters a server restart keeps: stories260K with
// the llama-3.1 chat template, and random adapters in an adapters directory.
type served struct {
	models      openai.ModelResolver
	adaptersDir string
}

// saveRandomAdapter writes adaptertest.Random(m, seed) to dir.
func saveRandomAdapter(t *testing.T, m *llama.Model, dir string, seed uint64) {
	t.Helper()
	if err := peft.Save(dir, adaptertest.Random(m, seed)); err != nil {
		t.Fatal(err)
	}
}

func newServed(t *testing.T) *served {
	t.Helper()
	backend := cpu.New(1)
	t.Cleanup(backend.Close)
	loaded, err := llama.Load(storiesDir, llama.LoadOptions{Backend: backend, ChatTemplate: "llama-3.1"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	saveRandomAdapter(t, loaded.Model, filepath.Join(dir, adapter), 1)
	saveRandomAdapter(t, loaded.Model, filepath.Join(dir, ".staging", "second"), 2) // for the admin form
	reg, err := adapters.NewRegistry(dir, baseName)
	if err != nil {
		t.Fatal(err)
	}
	w := adapters.Watch(reg, adapters.WatchOptions{})
	t.Cleanup(func() { w.Close() })
	pool, err := adapters.NewPool(loaded.Model, 2, 16, 0, reg, adapters.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := engine.NewEngine(loaded, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		engine.Close(ctx)
	})
	base, err := openai.NewStaticResolver(engine, baseName)
	if err != nil {
		t.Fatal(err)
	}
	return &served{models: openai.NewLoRAResolver(base, engine, pool), adaptersDir: dir}
}

// liveServer is an openai.Server with the playground, on an address that
// stays the same across restarts.
type liveServer struct {
	t      *testing.T
	models openai.ModelResolver
	addr   string
	http   *http.Server
	done   chan struct{}
}

// start serves a new openai.Server (requiring keys, if any) on the address
// of the previous one.
func (s *liveServer) start(keys ...string) {
	s.t.Helper()
	srv := openai.New(openai.Options{LoRAAdmin: true, APIKeys: keys, Playground: playground.Handler(),
		Logger: slog.New(slog.DiscardHandler)})
	srv.SetModels(s.models)
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger for a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("listening again on %s: %v", addr, err)
	}
	s.addr = ln.Addr().String()
	s.http = &http.Server{Handler: srv.Handler()}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.http.Serve(ln)
	}()
}

// stop closes the listener and every connection, as a crash would.
func (s *liveServer) stop() {
	s.http.Close()
	<-s.done
}

func (s *liveServer) url() string { return "http://" + s.addr + "/" }

// chromium finds the browser: $CHROMIUM, else the usual names.
func chromium(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"}
	if p := os.Getenv("CHROMIUM"); p != "" {
		names = append([]string{p}, names...)
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("no Chromium found (looked for $CHROMIUM and %s in PATH): the playground's browser test needs one; "+
		"install it with `apt-get install -y chromium` (as .ci/run does), or set CHROMIUM to its path", strings.Join(names, ", "))
	return ""
}

// browser starts headless Chromium and returns a tab's context. Uncaught
// exceptions, console errors and dialogs (alert: injected script) of every
// tab are collected; the test fails on any at its end.
type browser struct {
	t    *testing.T
	ctx  context.Context // the first tab
	mu   sync.Mutex
	errs []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.WindowSize(1280, 900), chromedp.Flag("lang", "en-US"))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	b := &browser{t: t}
	b.ctx = b.tab(ctx)
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.errs {
			t.Errorf("browser: %s", e)
		}
	})
	return b
}

// tab opens a tab (the first one starts the browser) and watches it.
func (b *browser) tab(parent context.Context) context.Context {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(parent)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, opens the tab
		b.t.Fatalf("starting Chromium: %v", err)
	}
	report := func(format string, args ...any) {
		b.mu.Lock()
		b.errs = append(b.errs, fmt.Sprintf(format, args...))
		b.mu.Unlock()
	}
	exceptions := chromedp.Events(ctx, cdpruntime.ExceptionThrown)
	console := chromedp.Events(ctx, cdpruntime.ConsoleAPICalled)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			report("uncaught exception at %s:%d: %s", d.URL, d.LineNumber, msg)
		}
	}()
	go func() {
		for ev, err := range console {
			if err != nil {
				return
			}
			if ev.Type == cdpruntime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value), a.Description)
				}
				report("console.error: %s", strings.Join(parts, " "))
			}
		}
	}()
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			report("a %s dialog opened (injected script?): %q", ev.Type, ev.Message)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return ctx
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitJS waits until the expression is truthy in the page.
func waitJS(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(20*time.Second),
		chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %s: %v\npage text:\n%s", what, err, state)
	}
}

// set sets a control's value as a person would (with input and change
// events) and checks that it took.
func set(t *testing.T, ctx context.Context, id, value string) {
	t.Helper()
	got := eval[string](t, ctx, fmt.Sprintf(`(() => {
		const e = document.getElementById(%q);
		e.value = %q;
		e.dispatchEvent(new Event('input', {bubbles: true}));
		e.dispatchEvent(new Event('change', {bubbles: true}));
		return e.value;
	})()`, id, value))
	if got != value {
		t.Fatalf("#%s: set %q, reads %q", id, value, got)
	}
}

// reply is a finished reply as the page shows it.
type reply struct {
	Model  string `json:"model"`
	Text   string `json:"text"`
	HTML   string `json:"html"`
	Stats  string `json:"stats"`
	TTFT   string `json:"ttft"`
	Tokens string `json:"tokens"`
	Rate   string `json:"rate"`
	Error  string `json:"error"`
	Box    [4]int `json:"box"` // left, top, right, bottom
}

// send types a message and presses Enter, then waits for the turn's
// replies to finish and returns them.
func send(t *testing.T, ctx context.Context, msg string) []reply {
	t.Helper()
	n := eval[int](t, ctx, `document.querySelectorAll('.turn').length`)
	do(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), msg), chromedp.KeyEvent(kb.Enter))
	waitJS(t, ctx, "the replies", fmt.Sprintf(`(() => {
		const turns = document.querySelectorAll('.turn');
		if (turns.length !== %d) return false;
		const rs = [...turns[turns.length - 1].querySelectorAll('.msg.assistant')];
		return rs.length > 0 && rs.every((r) => r.getAttribute('aria-busy') === 'false') && !document.getElementById('send').disabled;
	})()`, n+1))
	return eval[[]reply](t, ctx, `[...document.querySelectorAll('.turn:last-of-type .msg.assistant')].map((r) => {
		const s = r.querySelector('.stats'), b = r.getBoundingClientRect();
		return {model: r.querySelector('.who').lastChild.textContent, text: r.querySelector('.md').innerText.trim(),
			html: r.querySelector('.md').innerHTML, stats: s.textContent, ttft: s.dataset.ttftMs, tokens: s.dataset.tokens,
			rate: s.dataset.tokensPerSecond, error: r.querySelector('.reply-error')?.textContent ?? '',
			box: [b.left, b.top, b.right, b.bottom].map(Math.round)};
	})`)
}

// checkStreamed checks a reply that streamed: text, TTFT and tok/s shown.
func checkStreamed(t *testing.T, r reply) {
	t.Helper()
	if r.Error != "" {
		t.Fatalf("reply from %s failed: %s", r.Model, r.Error)
	}
	if r.Text == "" {
		t.Errorf("reply from %s is empty (stats %q)", r.Model, r.Stats)
	}
	ttft, err1 := strconv.ParseFloat(r.TTFT, 64)
	rate, err2 := strconv.ParseFloat(r.Rate, 64)
	tokens, err3 := strconv.Atoi(r.Tokens)
	if err1 != nil || err2 != nil || err3 != nil || ttft < 0 || rate <= 0 || tokens < 2 {
		t.Errorf("reply from %s: TTFT %q, tok/s %q, tokens %q: want numbers", r.Model, r.TTFT, r.Rate, r.Tokens)
	}
	if !strings.Contains(r.Stats, "TTFT") || !strings.Contains(r.Stats, "tok/s") {
		t.Errorf("reply from %s: stats %q do not show TTFT and tok/s", r.Model, r.Stats)
	}
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("PLAYGROUND_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "parrot-playground")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func TestPlaygroundInChromium(t *testing.T) {
	start := time.Now()
	b := newBrowser(t)
	ctx := b.ctx
	srv := &liveServer{t: t, models: newServed(t).models}
	srv.start()
	t.Cleanup(srv.stop)

	// The page loads and lists the base model and the adapter; the admin
	// routes answer, so their controls show.
	do(t, ctx, chromedp.Navigate(srv.url()), chromedp.WaitVisible(chromedp.ID("prompt")))
	waitJS(t, ctx, "the models", fmt.Sprintf(`(() => {
		const v = [...document.querySelectorAll('#model option')].map((o) => o.value);
		return v.includes(%q) && v.includes(%q) && !document.getElementById('admin').hidden;
	})()`, baseName, adapter))
	if got := eval[string](t, ctx, `document.getElementById('adapter-list').innerText`); !strings.Contains(got, adapter) || !strings.Contains(got, "on "+baseName) {
		t.Errorf("adapter list %q lacks %s on %s", got, adapter, baseName)
	}
	// Every control has a label.
	if unlabelled := eval[[]string](t, ctx, `[...document.querySelectorAll('input, select, textarea')]
		.filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id)`); len(unlabelled) > 0 {
		t.Errorf("controls without a label: %q", unlabelled)
	}

	// Greedy, so the texts are deterministic.
	set(t, ctx, "temperature", "0")
	set(t, ctx, "max-tokens", "24")
	set(t, ctx, "model", baseName)

	// Shift+Enter is a new line, not a send.
	do(t, ctx, chromedp.SendKeys(chromedp.ID("prompt"), "Once upon a time"), chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierShift)))
	if v := eval[string](t, ctx, `document.getElementById('prompt').value`); v != "Once upon a time\n" {
		t.Errorf("after Shift+Enter the message is %q, want a new line", v)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('.turn').length`); n != 0 {
		t.Fatalf("Shift+Enter sent the message")
	}
	set(t, ctx, "prompt", "")

	// One streamed reply from the base model.
	rs := send(t, ctx, "Once upon a time")
	if len(rs) != 1 || rs[0].Model != baseName {
		t.Fatalf("replies %+v, want one from %s", rs, baseName)
	}
	checkStreamed(t, rs[0])
	t.Logf("%s: %q (%s)", baseName, rs[0].Text, rs[0].Stats)

	// Side by side: the base and the adapter, two different texts.
	do(t, ctx, chromedp.Click(chromedp.ID("clear")), chromedp.Click(chromedp.ID("compare")))
	set(t, ctx, "adapter", adapter)
	rs = send(t, ctx, "Once upon a time")
	if len(rs) != 2 || rs[0].Model != baseName || rs[1].Model != adapter {
		t.Fatalf("side by side: %+v, want %s then %s", rs, baseName, adapter)
	}
	for _, r := range rs {
		checkStreamed(t, r)
		t.Logf("%s: %q (%s)", r.Model, r.Text, r.Stats)
	}
	if rs[0].Text == rs[1].Text {
		t.Errorf("the adapter's reply equals the base's: %q", rs[0].Text)
	}
	if l, r := rs[0].Box, rs[1].Box; r[0] < l[2] || r[1] != l[1] {
		t.Errorf("on a wide screen the replies are not side by side: %v, %v", l, r)
	}
	screenshot(t, ctx, "playground-side-by-side.png")

	// On a phone the columns stack.
	do(t, ctx, chromedp.EmulateViewport(390, 844))
	boxes := eval[[][4]int](t, ctx, `[...document.querySelectorAll('.turn:last-of-type .msg.assistant')]
		.map((r) => { const b = r.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom].map(Math.round); })`)
	if len(boxes) != 2 || boxes[1][1] < boxes[0][3] || boxes[1][0] != boxes[0][0] || boxes[0][2] > 390 {
		t.Errorf("on a 390px screen the replies do not stack: %v", boxes)
	}
	if w := eval[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("on a 390px screen the page is %dpx wide", w)
	}
	screenshot(t, ctx, "playground-phone.png")
	do(t, ctx, chromedp.EmulateViewport(1280, 900))

	// Load and unload an adapter through the admin controls.
	do(t, ctx, chromedp.SendKeys(chromedp.ID("load-name"), "second"), chromedp.SendKeys(chromedp.ID("load-path"), ".staging/second"),
		chromedp.Click(chromedp.ID("load-adapter")))
	waitJS(t, ctx, "the loaded adapter", `document.getElementById('admin-status').textContent.includes('Success')
		&& document.getElementById('adapter-list').innerText.includes('second')
		&& [...document.querySelectorAll('#adapter option')].some((o) => o.value === 'second')`)
	do(t, ctx, chromedp.Click(chromedp.CSS(`button[aria-label="Unload second"]`)))
	waitJS(t, ctx, "the unloaded adapter", `document.getElementById('admin-status').textContent.includes('removed')
		&& !document.getElementById('adapter-list').innerText.includes('second')`)

	// The server goes away: a send shows a readable error, and the page
	// keeps working once a new server listens on the same address.
	srv.stop()
	rs = send(t, ctx, "Hello")
	for _, r := range rs {
		if !strings.Contains(r.Error, "Cannot reach the server") {
			t.Errorf("with the server down, %s's reply shows %q, want a connection error", r.Model, r.Error)
		}
	}
	srv.start()
	rs = send(t, ctx, "Once upon a time")
	if len(rs) != 2 {
		t.Fatalf("after the restart: %d replies", len(rs))
	}
	for _, r := range rs {
		checkStreamed(t, r)
	}

	// A server that wants an API key: the 401 says so and moves to the key
	// field; with the key (kept in sessionStorage) the send works.
	srv.stop()
	srv.start(serverKey)
	rs = send(t, ctx, "Hello")
	for _, r := range rs {
		if !strings.Contains(r.Error, "401") || !strings.Contains(r.Error, "API key") {
			t.Errorf("without a key, %s's reply shows %q, want the 401 explained", r.Model, r.Error)
		}
	}
	if id := eval[string](t, ctx, `document.activeElement.id`); id != "api-key" {
		t.Errorf("after a 401 the focus is on %q, want the API key field", id)
	}
	do(t, ctx, chromedp.SendKeys(chromedp.ID("api-key"), serverKey+"\t"))
	if got := eval[string](t, ctx, `sessionStorage.getItem('parrot.apiKey')`); got != serverKey {
		t.Errorf("sessionStorage holds the key %q, want %q", got, serverKey)
	}
	rs = send(t, ctx, "Once upon a time")
	for _, r := range rs {
		checkStreamed(t, r)
	}

	t.Run("renderer", func(t *testing.T) { testRenderer(t, ctx) })
	t.Run("hostile output", func(t *testing.T) { testHostileOutput(t, b) })
	t.Logf("browser test took %v", time.Since(start).Round(time.Millisecond))
}

// testRenderer runs the page's Markdown renderer on fixed cases (exact
// HTML) and on hostile and random inputs: only the allowed tags and
// attributes may come out, links only to http(s), and no "<" of the input
// may be lost (each is text, never markup).
func testRenderer(t *testing.T, ctx context.Context) {
	exact := []struct {
		In   string `json:"in"`
		Want string `json:"want"`
	}{
		{"**bold** and *it* and __b__ and _i_", "<p><strong>bold</strong> and <em>it</em> and <strong>b</strong> and <em>i</em></p>"},
		{"a\nb\n\nc", "<p>a<br>b</p><p>c</p>"},
		{"- x\n- **y**", "<ul><li>x</li><li><strong>y</strong></li></ul>"},
		{"2. x\n3. y", `<ol start="2"><li>x</li><li>y</li></ol>`},
		{"```go\nif x < 1 {\n```\nafter", `<pre><code class="language-go">if x &lt; 1 {</code></pre><p>after</p>`},
		{"```\nunclosed *x*", "<pre><code>unclosed *x*</code></pre>"},
		{"`**x** <b>`", "<p><code>**x** &lt;b&gt;</code></p>"},
		{"[a](https://e.com/?q=1&r=2) [b](javascript:alert(1)) [c](data:text/html,x)",
			`<p><a href="https://e.com/?q=1&amp;r=2" rel="noopener noreferrer" target="_blank">a</a> [b](javascript:alert(1)) [c](data:text/html,x)</p>`},
		{`[x](https://e.com/"onmouseover="alert)`, `<p><a href="https://e.com/&quot;onmouseover=&quot;alert" rel="noopener noreferrer" target="_blank">x</a></p>`},
		{`[x](https://e.com/"onmouseover="alert(1))`, `<p>[x](https://e.com/&quot;onmouseover=&quot;alert(1))</p>`},
		{"<img src=x onerror=alert(1)>", "<p>&lt;img src=x onerror=alert(1)&gt;</p>"},
		{"<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"},
		{"2 * 3 * 4", "<p>2 * 3 * 4</p>"},
		{"nul\u0000\u00000\u0000", "<p>nul0</p>"},
	}
	cases, _ := json.Marshal(exact)
	got := eval[[]string](t, ctx, `JSON.parse(`+strconv.Quote(string(cases))+`).map((c) => window.parrotPlayground.renderMarkdown(c.in))`)
	for i, c := range exact {
		if i < len(got) && got[i] != c.Want {
			t.Errorf("renderMarkdown(%q)\n got %s\nwant %s", c.In, got[i], c.Want)
		}
	}

	problems := eval[[]string](t, ctx, `(() => {
		const render = window.parrotPlayground.renderMarkdown;
		const allowed = {P: [], BR: [], STRONG: [], EM: [], CODE: ['class'], PRE: [], UL: [], OL: ['start'], LI: [], A: ['href', 'rel', 'target']};
		const problems = [];
		const check = (src) => {
			const tpl = document.createElement('template');
			tpl.innerHTML = render(src);
			for (const el of tpl.content.querySelectorAll('*')) {
				const attrs = allowed[el.tagName];
				if (!attrs) { problems.push('<' + el.tagName + '> from ' + JSON.stringify(src)); continue; }
				for (const a of el.attributes) {
					if (!attrs.includes(a.name)) problems.push('attribute ' + a.name + ' from ' + JSON.stringify(src));
				}
				if (el.tagName === 'A' && (!/^https?:\/\//i.test(el.getAttribute('href')) || !el.relList.contains('noopener')))
					problems.push('link ' + el.outerHTML + ' from ' + JSON.stringify(src));
				if (el.tagName === 'CODE' && el.hasAttribute('class') && !/^language-[\w+-]+$/.test(el.className))
					problems.push('class ' + el.className + ' from ' + JSON.stringify(src));
			}
			const lt = (s) => s.split('<').length - 1;
			if (lt(tpl.content.textContent) !== lt(src)) problems.push('lost a "<" of ' + JSON.stringify(src));
		};
		const hostile = ['<img src=x onerror=alert(1)>', '<script>alert(1)</script>', '<a href="javascript:alert(1)">x</a>',
			'[x](javascript:alert(1))', '[x](JaVaScRiPt:alert(1))', '[x](https://a.b/" onclick="alert(1))', "[x](https://a.b/' onclick='alert(1))",
			'[<img src=x onerror=alert(1)>](https://a.b)', '`+"```"+`"><script>alert(1)</script>\nx', '`+"```"+`x" onload="y\ncode\n`+"```"+`',
			'**<svg onload=alert(1)>**', '*<iframe src=javascript:alert(1)>*', '- <b>x</b>\n1. <i>y</i>', '&lt;script&gt;', '\u0000<p>\u0000'];
		hostile.forEach(check);
		let seed = 12345;
		const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
		const pieces = ['<', '>', '"', "'", '&', '*', '**', '_', '__', '`+"`"+`', '`+"```"+`', '[', ']', '(', ')', 'https://x.y/',
			'javascript:', '\n', '\n\n', '- ', '1. ', 'a', ' ', '<img src=x onerror=alert(1)>', '<script>', '\u0000', '~~~', 'onerror=', '=', '&lt;', '0'];
		for (let i = 0; i < 3000; i++) {
			let s = '';
			for (let n = 1 + rnd(24); n > 0; n--) s += pieces[rnd(pieces.length)];
			check(s);
		}
		return problems.slice(0, 20);
	})()`)
	for _, p := range problems {
		t.Errorf("renderer: %s", p)
	}
}

// hostileText is what the scripted model says: markup and script that must
// show as text, and Markdown that must render.
const hostileText = "Hi <img src=x onerror=alert(1)> and <script>alert(2)</script>\n\n" +
	"**bold** [bad](javascript:alert(3)) [good](https://example.com/?a=1&b=2) `<b>code</b>`\n" +
	"```\n<script>alert(4)</script>\n```"

// hostilePieces are the streamed deltas of hostileText.
func hostilePieces() []string {
	var pieces []string
	for s := hostileText; s != ""; {
		n := min(len(s), 9)
		pieces = append(pieces, s[:n])
		s = s[n:]
	}
	return pieces
}

// fakeServer serves the playground and a scripted model: "evil" streams
// hostileText in pieces (one event split across two writes), "broken"
// answers an OpenAI error.
func fakeServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/", playground.Handler())
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"evil","object":"model","owned_by":"test"},{"id":"broken","object":"model","owned_by":"test"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string `json:"model"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		if req.Model == "broken" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"message":"'temperature' must be at most 2.","type":"invalid_request_error","param":"temperature","code":null}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		chunk := func(delta string) string {
			b, _ := json.Marshal(map[string]any{"id": "c", "object": "chat.completion.chunk", "model": "evil",
				"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": delta}}}})
			return "data: " + string(b) + "\n\n"
		}
		pieces := hostilePieces()
		for i, p := range pieces {
			ev := chunk(p)
			if i == 2 { // an event split across reads of the stream
				io.WriteString(w, ev[:10])
				fl.Flush()
				time.Sleep(10 * time.Millisecond)
				ev = ev[10:]
			}
			io.WriteString(w, ev)
			fl.Flush()
		}
		fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", len(pieces), len(pieces)+3)
		io.WriteString(w, "data: [DONE]\n\n")
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func testHostileOutput(t *testing.T, b *browser) {
	ts := fakeServer(t)
	ctx := b.tab(b.ctx)
	do(t, ctx, chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.ID("prompt")))
	waitJS(t, ctx, "the fake models", `[...document.querySelectorAll('#model option')].some((o) => o.value === 'evil')`)
	// No admin routes here (404): no admin controls.
	if hidden := eval[bool](t, ctx, `document.getElementById('admin').hidden`); !hidden {
		t.Errorf("admin controls shown on a server without admin routes")
	}
	set(t, ctx, "model", "evil")
	rs := send(t, ctx, "say something nasty")
	if len(rs) != 1 {
		t.Fatalf("%d replies", len(rs))
	}
	r := rs[0]
	if r.Error != "" {
		t.Fatalf("reply failed: %s", r.Error)
	}
	for _, want := range []string{"<img src=x onerror=alert(1)>", "<script>alert(2)</script>", "[bad](javascript:alert(3))", "<b>code</b>", "<script>alert(4)</script>"} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("reply text lacks %q as text:\n%s", want, r.Text)
		}
	}
	if want := strconv.Itoa(len(hostilePieces())); r.Tokens != want {
		t.Errorf("tokens %q, want %s (the usage chunk's completion_tokens)", r.Tokens, want)
	}
	dom := eval[map[string]any](t, ctx, `(() => {
		const md = document.querySelector('.turn:last-of-type .md');
		return {
			injected: document.querySelectorAll('#conversation img, #conversation script, #conversation iframe, #conversation [onerror]').length,
			links: [...md.querySelectorAll('a')].map((a) => a.getAttribute('href') + ' ' + a.rel),
			strong: md.querySelector('strong')?.textContent ?? '',
			code: md.querySelector('p code')?.textContent ?? '',
			pre: md.querySelector('pre code')?.textContent ?? '',
		};
	})()`)
	if n, _ := dom["injected"].(float64); n != 0 {
		t.Errorf("model output injected %v elements: %s", n, r.HTML)
	}
	if links, _ := json.Marshal(dom["links"]); string(links) != `["https://example.com/?a=1\u0026b=2 noopener noreferrer"]` {
		t.Errorf("links %s, want only the https one with rel=noopener", links)
	}
	if dom["strong"] != "bold" || dom["code"] != "<b>code</b>" || dom["pre"] != "<script>alert(4)</script>" {
		t.Errorf("Markdown not rendered as expected: %v\n%s", dom, r.HTML)
	}

	screenshot(t, ctx, "playground-hostile-output.png")

	// An OpenAI error reads as its message.
	set(t, ctx, "model", "broken")
	rs = send(t, ctx, "hello")
	if len(rs) != 1 || !strings.Contains(rs[0].Error, "400") || !strings.Contains(rs[0].Error, "'temperature' must be at most 2.") {
		t.Errorf("error reply %+v, want the server's message", rs)
	}
	time.Sleep(100 * time.Millisecond) // an injected handler would have run (and been reported) by now
}
