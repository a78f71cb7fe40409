package chat

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

// probe is one entry of testdata/probes.json, written by gen_probes.py
// with Jinja2 in transformers' chat-template environment.
type probe struct {
	Name     string
	Template string
	Vars     map[string]json.RawMessage
	Output   *string
	Error    *string
}

// probeNow is the clock gen_probes.py freezes strftime_now to.
var probeNow = time.Date(2026, 8, 22, 14, 5, 9, 123456000, time.UTC)

func loadProbes(t *testing.T) []probe {
	t.Helper()
	raw, err := os.ReadFile("testdata/probes.json")
	if err != nil {
		t.Fatal(err)
	}
	var ps []probe
	if err := json.Unmarshal(raw, &ps); err != nil {
		t.Fatal(err)
	}
	if len(ps) < 80 {
		t.Fatalf("only %d probes in testdata/probes.json", len(ps))
	}
	return ps
}

func renderProbe(p probe) (string, error) {
	tpl, err := New(p.Template, nil)
	if err != nil {
		return "", err
	}
	opts := []Option{WithNow(probeNow)}
	for name, v := range p.Vars {
		opts = append(opts, WithVar(name, v))
	}
	return tpl.Render(nil, false, opts...)
}

// TestProbesMatchJinja2 renders each probe and compares with Jinja2's bytes.
func TestProbesMatchJinja2(t *testing.T) {
	for _, p := range loadProbes(t) {
		t.Run(p.Name, func(t *testing.T) {
			got, err := renderProbe(p)
			switch {
			case p.Error != nil:
				var te *TemplateError
				if !errors.As(err, &te) {
					t.Fatalf("want raise_exception(%q), got output %q, err %v", *p.Error, got, err)
				}
				if te.Message != *p.Error {
					t.Fatalf("raised %q, want %q", te.Message, *p.Error)
				}
			case err != nil:
				t.Fatalf("template %q: %v", p.Template, err)
			case got != *p.Output:
				t.Fatalf("template %q\n got %q\nwant %q", p.Template, got, *p.Output)
			}
		})
	}
}
