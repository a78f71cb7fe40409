package chat

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// conversations are the ones render.py builds.
var conversations = map[string][]Message{
	"sys_user_asst": {{Role: "system", Content: "SYS"}, {Role: "user", Content: "USER"}, {Role: "assistant", Content: "ASST"}},
	"user_only":     {{Role: "user", Content: "USER"}},
	"multi":         {{Role: "user", Content: "U1"}, {Role: "assistant", Content: "A1"}, {Role: "user", Content: "U2"}, {Role: "assistant", Content: "A2"}},
	"ws":            {{Role: "system", Content: "  SYS \n"}, {Role: "user", Content: " USER\n"}, {Role: "assistant", Content: "\nASST  "}},
}

var llamaSpecials = map[string]string{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}

// renderPyNow is the date render.py freezes strftime_now to.
var renderPyNow = time.Date(2026, 8, 22, 0, 0, 0, 0, time.Local)

type renderedExample struct {
	template, conv string
	strftime, agp  bool
	want           string
}

// loadRenderedExamples parses rendered_examples.txt: a header line
// "=== <template> strftime_now=<defined|undefined> conv=<name> add_generation_prompt=<bool>"
// followed by the Python repr of the output.
func loadRenderedExamples(t *testing.T) []renderedExample {
	t.Helper()
	f, err := os.Open("testdata/rendered_examples.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []renderedExample
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		head := sc.Text()
		var ex renderedExample
		var strf, agp string
		if _, err := fmt.Sscanf(head, "=== %s strftime_now=%s conv=%s add_generation_prompt=%s", &ex.template, &strf, &ex.conv, &agp); err != nil {
			t.Fatalf("bad header %q: %v", head, err)
		}
		ex.strftime = strf == "defined"
		ex.agp = agp == "True"
		if !sc.Scan() {
			t.Fatalf("no output after %q", head)
		}
		ex.want, err = pyUnrepr(sc.Text())
		if err != nil {
			t.Fatalf("%s: %v", head, err)
		}
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// pyUnrepr decodes the repr of a Python str.
func pyUnrepr(s string) (string, error) {
	if len(s) < 2 || (s[0] != '\'' && s[0] != '"') || s[len(s)-1] != s[0] {
		return "", fmt.Errorf("not a Python string literal: %.40q", s)
	}
	body := s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(body) {
			return "", fmt.Errorf("dangling backslash")
		}
		switch e := body[i]; e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+n >= len(body)+1 {
				return "", fmt.Errorf("short \\%c escape", e)
			}
			r, err := strconv.ParseUint(body[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", err
			}
			b.WriteRune(rune(r))
			i += n
		default:
			return "", fmt.Errorf("unknown escape \\%c", e)
		}
	}
	return b.String(), nil
}

func mustTemplateFile(t *testing.T, name string, specials map[string]string) *Template {
	t.Helper()
	src, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := New(string(src), specials)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tpl
}

// TestRenderedExamples reproduces every output of render.py byte for byte.
func TestRenderedExamples(t *testing.T) {
	examples := loadRenderedExamples(t)
	if len(examples) != 24 {
		t.Fatalf("parsed %d examples, want 24", len(examples))
	}
	for _, ex := range examples {
		name := fmt.Sprintf("%s/strftime=%v/%s/agp=%v", ex.template, ex.strftime, ex.conv, ex.agp)
		t.Run(name, func(t *testing.T) {
			tpl := mustTemplateFile(t, ex.template, llamaSpecials)
			var msgs []Message
			for _, m := range conversations[ex.conv] {
				if ex.agp && m.Role == "assistant" {
					continue // render.py drops assistant turns when prompting for one
				}
				msgs = append(msgs, m)
			}
			if msgs == nil {
				t.Fatalf("unknown conversation %q", ex.conv)
			}
			opts := []Option{WithNow(renderPyNow)}
			if !ex.strftime {
				opts = []Option{WithoutStrftimeNow()}
			}
			got, err := tpl.Render(msgs, ex.agp, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got != ex.want {
				t.Fatalf("\n got %q\nwant %q", got, ex.want)
			}
		})
	}
}

// TestProbesThroughMessages renders the full-template probes from a
// []Message instead of a JSON "messages" variable: same bytes expected.
func TestProbesThroughMessages(t *testing.T) {
	n := 0
	for _, p := range loadProbes(t) {
		if !strings.HasPrefix(p.Name, "llama3") && !strings.HasPrefix(p.Name, "unsloth") {
			continue
		}
		n++
		t.Run(p.Name, func(t *testing.T) {
			var msgs []struct {
				Role      string `json:"role"`
				Content   string `json:"content"`
				ToolCalls []struct {
					Type     string `json:"type"`
					Function struct {
						Name      string          `json:"name"`
						Arguments json.RawMessage `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
				ToolCallID string `json:"tool_call_id"`
			}
			if err := json.Unmarshal(p.Vars["messages"], &msgs); err != nil {
				t.Fatal(err)
			}
			var messages []Message
			for _, m := range msgs {
				msg := Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
				for _, c := range m.ToolCalls {
					// Arguments as json.RawMessage keep their key order and number spelling.
					msg.ToolCalls = append(msg.ToolCalls, map[string]any{
						"type":     c.Type,
						"function": map[string]any{"name": c.Function.Name, "arguments": c.Function.Arguments},
					})
				}
				messages = append(messages, msg)
			}
			var agp bool
			opts := []Option{WithNow(probeNow)}
			for name, v := range p.Vars {
				switch name {
				case "messages":
				case "add_generation_prompt":
					agp = string(v) == "true"
				default:
					opts = append(opts, WithVar(name, v))
				}
			}
			tpl, err := New(p.Template, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tpl.Render(messages, agp, opts...)
			if p.Error != nil {
				var te *TemplateError
				if !errors.As(err, &te) || te.Message != *p.Error {
					t.Fatalf("want raise_exception(%q), got %q, %v", *p.Error, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != *p.Output {
				t.Fatalf("\n got %q\nwant %q", got, *p.Output)
			}
		})
	}
	if n < 15 {
		t.Fatalf("only %d full-template probes", n)
	}
}

func TestRaiseException(t *testing.T) {
	const src = `{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}` +
		`{{ raise_exception('Unsupported role: ' + m.role) }}{% endif %}[{{ m.content }}]{% endfor %}`
	tpl, err := New(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpl.Render([]Message{{Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}}, false)
	if err != nil || got != "[a][b]" {
		t.Fatalf("good roles: %q, %v", got, err)
	}
	got, err = tpl.Render([]Message{{Role: "user", Content: "a"}, {Role: "robot", Content: "b"}}, false)
	var te *TemplateError
	if !errors.As(err, &te) {
		t.Fatalf("want *TemplateError, got %q, %v", got, err)
	}
	if te.Message != "Unsupported role: robot" {
		t.Fatalf("message %q", te.Message)
	}
	if got != "" {
		t.Fatalf("output %q returned with an error", got)
	}

	// The official template raises on a two-call assistant turn.
	official := mustTemplateFile(t, "llama31_official.jinja", llamaSpecials)
	call := map[string]any{"type": "function", "function": map[string]any{"name": "f", "arguments": map[string]any{}}}
	_, err = official.Render([]Message{{Role: "user", Content: "u"}, {Role: "assistant", ToolCalls: []map[string]any{call, call}}}, false)
	if !errors.As(err, &te) || te.Message != "This model only supports single tool-calls at once!" {
		t.Fatalf("official template: %v", err)
	}
}

// TestRenderErrorsAreNotRaises: ordinary failures are errors, but not *TemplateError.
func TestRenderErrorsAreNotRaises(t *testing.T) {
	for _, src := range []string{
		"{{ 'x'|no_such_filter }}",
		"{{ no_such_function() }}",
		"{{ 'a'.no_such_method() }}",
		"{{ [1]|tojson(bad_arg=1) }}",
		"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
		"{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
		"{{ 'a'.split('') }}",
	} {
		tpl, err := New(src, nil)
		if err != nil {
			continue // rejected at compile time is fine too
		}
		got, err := tpl.Render(nil, false)
		if err == nil {
			t.Errorf("%q rendered %q without error", src, got)
			continue
		}
		var te *TemplateError
		if errors.As(err, &te) {
			t.Errorf("%q: got a TemplateError: %v", src, err)
		}
	}
}

// TestEnginePanicsBecomeErrors: inputs on which gonja panics (found by
// probing) come back from Render as errors.
func TestEnginePanicsBecomeErrors(t *testing.T) {
	for _, src := range []string{"{{ 10 % 0 }}", "{{ 'a' * -1 }}", "{{ 'a'.center(5, '') }}"} {
		tpl, err := New(src, nil)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		got, err := tpl.Render(nil, false)
		if err == nil || !strings.Contains(err.Error(), "engine panic") {
			t.Errorf("%q: got %q, %v; want an engine panic error", src, got, err)
		}
	}
}

func TestMalformedTemplates(t *testing.T) {
	for _, src := range []string{
		"{% if %}x{% endif %}",
		"{{ ",
		"{% for x in %}{% endfor %}",
		"{% endif %}",
		"{{ x | }}",
		"{% if true %}never closed",
		"{{ 1 + }}",
		"{% for %}",
		"{% set = 1 %}",
		"{{ messages[ }}",
		"{% macro %}{% endmacro %}",
		"{% generation x %}{% endgeneration %}",
		"{% raw %}",
		"{# unterminated comment",
		"{% include 'chat_template' %}",
		"{% extends 'base.jinja' %}",
		"{% import 'macros.jinja' as m %}",
	} {
		_, err := New(src, nil)
		if err == nil {
			t.Errorf("%q compiled", src)
			continue
		}
		if !strings.HasPrefix(err.Error(), "chat: compiling template: ") {
			t.Errorf("%q: unclear error %q", src, err)
		}
	}
}

// FuzzTemplate checks that no template source crashes New or Render.
func FuzzTemplate(f *testing.F) {
	for _, name := range []string{"llama31_official.jinja", "llama32_official.jinja", "unsloth_llama31.jinja"} {
		src, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	f.Add("{% for m in messages %}{{ m.content|tojson(indent=2) }}{% endfor %}")
	f.Add("{{ messages[0]['content'].split()[::-1]|join(' ') }}")
	f.Fuzz(func(t *testing.T, src string) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			tpl, err := New(src, llamaSpecials)
			if err != nil {
				return
			}
			_, _ = tpl.Render(conversations["sys_user_asst"], true, WithNow(renderPyNow))
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("New/Render did not return for %q", src)
		}
	})
}

func TestFromTokenizerConfig(t *testing.T) {
	official, err := os.ReadFile("testdata/llama31_official.jinja")
	if err != nil {
		t.Fatal(err)
	}
	unsloth, err := os.ReadFile("testdata/unsloth_llama31.jinja")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, ex := range loadRenderedExamples(t) {
		if ex.conv == "sys_user_asst" && !ex.agp {
			want[ex.template] = ex.want
		}
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	cases := []struct {
		name, config, wantFrom string
	}{
		{"string", `{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": ` + q(string(official)) + `}`, "llama31_official.jinja"},
		{"list with default", `{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": [` +
			`{"name": "tool_use", "template": ` + q(string(unsloth)) + `}, {"name": "default", "template": ` + q(string(official)) + `}]}`, "llama31_official.jinja"},
		{"AddedToken objects", `{"bos_token": {"__type": "AddedToken", "content": "<|begin_of_text|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},` +
			`"eos_token": {"content": "<|eot_id|>"}, "pad_token": null, "chat_template": ` + q(string(unsloth)) + `}`, "unsloth_llama31.jinja"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tpl, ok, err := FromTokenizerConfig([]byte(c.config))
			if err != nil || !ok {
				t.Fatalf("ok=%v err=%v", ok, err)
			}
			got, err := tpl.Render(conversations["sys_user_asst"], false)
			if err != nil {
				t.Fatal(err)
			}
			if got != want[c.wantFrom] {
				t.Fatalf("\n got %q\nwant %q", got, want[c.wantFrom])
			}
		})
	}

	t.Run("specials reach the template", func(t *testing.T) {
		tpl, ok, err := FromTokenizerConfig([]byte(`{"chat_template": "{{ bos_token }}|{{ eos_token }}|{{ unk_token }}|{{ pad_token is defined }}",` +
			`"bos_token": {"content": "<s>"}, "eos_token": "</s>", "unk_token": "<unk>", "pad_token": null}`))
		if err != nil || !ok {
			t.Fatalf("ok=%v err=%v", ok, err)
		}
		got, err := tpl.Render(nil, false)
		if err != nil || got != "<s>|</s>|<unk>|False" {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("no template", func(t *testing.T) {
		for _, cfg := range []string{`{"bos_token": "<s>"}`, `{"chat_template": null}`} {
			tpl, ok, err := FromTokenizerConfig([]byte(cfg))
			if tpl != nil || ok || err != nil {
				t.Fatalf("%s: %v %v %v", cfg, tpl, ok, err)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, cfg := range []string{
			`not json`,
			`{"chat_template": [{"name": "tool_use", "template": "x"}]}`,
			`{"chat_template": 5}`,
			`{"chat_template": "{% if %}"}`,
			`{"chat_template": "x", "bos_token": 3}`,
			`{"chat_template": "x", "bos_token": {"id": 3}}`,
		} {
			if _, ok, err := FromTokenizerConfig([]byte(cfg)); err == nil || ok {
				t.Errorf("%s: ok=%v err=%v", cfg, ok, err)
			}
		}
	})
}

func TestBuiltin(t *testing.T) {
	src, ok := Builtin(BuiltinLlama31)
	if !ok {
		t.Fatal("llama-3.1 missing")
	}
	official, err := os.ReadFile("testdata/llama31_official.jinja")
	if err != nil {
		t.Fatal(err)
	}
	if src != string(official) {
		t.Fatal("built-in llama-3.1 differs from the official template (testdata/llama31_official.jinja)")
	}
	if _, ok := Builtin("no-such-template"); ok {
		t.Fatal("unknown name found")
	}
}

// A --chat-template value is a built-in name, a template file, or Jinja
// source; anything else (a misspelt name) is refused with the built-in names.
func TestResolveSource(t *testing.T) {
	for _, name := range BuiltinNames() {
		want, ok := Builtin(name)
		if got, err := ResolveSource(name); !ok || err != nil || got != want {
			t.Errorf("built-in %s: ok %v, err %v", name, ok, err)
		}
	}
	src := "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
	if got, err := ResolveSource(src); err != nil || got != src {
		t.Errorf("Jinja source: %q, %v", got, err)
	}
	if got, err := ResolveSource("{{ bos_token }}"); err != nil || got != "{{ bos_token }}" {
		t.Errorf("an expression alone: %q, %v", got, err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "chat_template.jinja")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ResolveSource(file); err != nil || got != src {
		t.Errorf("file: %q, %v", got, err)
	}
	plain := filepath.Join(dir, "plain.txt")
	os.WriteFile(plain, []byte("You are a pirate."), 0o644)
	for value, want := range map[string]string{
		"llama3.1":                          `chat template "llama3.1" is not a built-in template (llama-3.1), a file, or Jinja source`,
		"Llama-3.1":                         `"Llama-3.1" is not a built-in template (llama-3.1)`,
		"You are a pirate.":                 `"You are a pirate." is not a built-in template`,
		filepath.Join(dir, "missing.jinja"): "is not a built-in template (llama-3.1), a file, or Jinja source",
		dir:                                 "is a directory",
		plain:                               "holds no Jinja tags",
	} {
		if _, err := ResolveSource(value); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error with %q", value, err, want)
		}
	}
}

func TestWithVarGoValues(t *testing.T) {
	tpl, err := New(`{{ m|tojson }}|{{ s|tojson }}|{{ l|tojson }}|{{ n is none }}|{{ f|tojson }}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	type tool struct {
		Name   string `json:"name"`
		Arity  int    `json:"arity"`
		Hidden bool   `json:"-"`
	}
	got, err := tpl.Render(nil, false,
		WithVar("m", map[string]any{"b": 1, "a": []string{"x"}}), // Go maps: sorted keys
		WithVar("s", tool{Name: "f", Arity: 2, Hidden: true}),    // structs: field order
		WithVar("l", []int32{1, 2}),
		WithVar("n", nil),
		WithVar("f", []any{2.0, 2.5, float32(-1), json.Number("2.0")})) // integral float64s read as JSON ints
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a": ["x"], "b": 1}|{"name": "f", "arity": 2}|[1, 2]|True|[2, 2.5, -1, 2.0]`; got != want {
		t.Fatalf("\n got %q\nwant %q", got, want)
	}
	if _, err := tpl.Render(nil, false, WithVar("m", make(chan int))); err == nil {
		t.Fatal("a channel was accepted as a template value")
	}
	if _, err := tpl.Render(nil, false, WithVar("m", json.RawMessage(`{"a": `))); err == nil {
		t.Fatal("truncated JSON was accepted")
	}
	bad := []Message{{Role: "assistant", ToolCalls: []map[string]any{{"function": func() {}}}}}
	if _, err := tpl.Render(bad, false); err == nil {
		t.Fatal("a func in tool_calls was accepted")
	}
}

// TestConcurrentRender renders one compiled template from many goroutines
// (run with -race) and checks every result against a sequential render.
func TestConcurrentRender(t *testing.T) {
	tpl := mustTemplateFile(t, "llama32_official.jinja", llamaSpecials)
	type job struct {
		msgs []Message
		now  time.Time
	}
	var jobs []job
	for i := range 16 {
		jobs = append(jobs, job{
			msgs: []Message{{Role: "system", Content: fmt.Sprintf("sys %d", i)}, {Role: "user", Content: strings.Repeat("u", i)}},
			now:  time.Date(2025, time.Month(1+i%12), 1+i, 0, 0, 0, 0, time.UTC),
		})
	}
	want := make([]string, len(jobs))
	for i, j := range jobs {
		var err error
		if want[i], err = tpl.Render(j.msgs, true, WithNow(j.now)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(jobs))
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, j := range jobs {
				got, err := tpl.Render(j.msgs, true, WithNow(j.now))
				if err != nil {
					errs <- err
				} else if got != want[i] {
					errs <- fmt.Errorf("job %d: got %q want %q", i, got, want[i])
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStrftimeMatchesPython(t *testing.T) {
	raw, err := os.ReadFile("testdata/strftime.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct{ Time, Format, Output string }
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		tm, err := time.ParseInLocation("2006-01-02T15:04:05.999999", c.Time, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		if got := strftime(c.Format, tm); got != c.Output {
			t.Errorf("%s %q:\n got %q\nwant %q", c.Time, c.Format, got, c.Output)
		}
	}
}

func BenchmarkRenderLlama31(b *testing.B) {
	src, _ := Builtin(BuiltinLlama31)
	tpl, err := New(src, llamaSpecials)
	if err != nil {
		b.Fatal(err)
	}
	var msgs []Message
	for i := range 10 {
		msgs = append(msgs, Message{Role: "user", Content: fmt.Sprintf("question %d", i)}, Message{Role: "assistant", Content: "answer"})
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := tpl.Render(msgs, true); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConcurrentProbes renders each compiled probe template from several
// goroutines at once (macros, namespaces, loops, tojson ...; run with -race).
func TestConcurrentProbes(t *testing.T) {
	for _, p := range loadProbes(t) {
		if p.Output == nil {
			continue
		}
		tpl, err := New(p.Template, nil)
		if err != nil {
			t.Fatal(err)
		}
		opts := []Option{WithNow(probeNow)}
		for name, v := range p.Vars {
			opts = append(opts, WithVar(name, v))
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := tpl.Render(nil, false, opts...)
				if err != nil || got != *p.Output {
					t.Errorf("%s: got %q, %v", p.Name, got, err)
				}
			}()
		}
		wg.Wait()
	}
}
