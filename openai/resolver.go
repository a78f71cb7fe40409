package openai

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// Generator is what a served model name runs on: *engine.Engine, or (for a
// LoRA adapter) a wrapper that sets the adapter on each request before
// handing it to the base model's engine.
type Generator interface {
	Submit(ctx context.Context, req engine.Request) (<-chan engine.Event, error)
	Tokenize(req *engine.Request) ([]int32, error)
	MaxModelLen() int
	Loaded() *llama.Loaded
}

// ErrModelNotFound is returned by a ModelResolver for an unknown name.
var ErrModelNotFound = errors.New("model not found")

// Target is a resolved model name.
type Target struct {
	Name   string // the name responses report (the one asked for, or the default)
	Engine Generator
}

// ModelResolver maps a request's `model` to what runs it. The base model's
// served names resolve to its engine; an adapter registry can implement this
// interface to add adapter names that resolve to adapter-bound Generators.
type ModelResolver interface {
	// Resolve returns the target for name; "" means the default model.
	// An unknown name is ErrModelNotFound.
	Resolve(name string) (Target, error)
	// Models lists the served names, for GET /v1/models.
	Models() []ModelCard
}

// StaticResolver serves one engine under one or more names (the first is
// the default and the root of the others).
type StaticResolver struct {
	names   []string
	engine  Generator
	created int64
}

// NewStaticResolver serves engine under names (at least one, no duplicates).
func NewStaticResolver(engine Generator, names ...string) (*StaticResolver, error) {
	if engine == nil {
		return nil, errors.New("openai: nil engine")
	}
	if len(names) == 0 {
		return nil, errors.New("openai: a served model needs at least one name")
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" {
			return nil, errors.New("openai: empty served model name")
		}
		if seen[n] {
			return nil, fmt.Errorf("openai: served model name %q given twice", n)
		}
		seen[n] = true
	}
	return &StaticResolver{names: names, engine: engine, created: time.Now().Unix()}, nil
}

// Resolve implements ModelResolver.
func (r *StaticResolver) Resolve(name string) (Target, error) {
	if name == "" {
		return Target{Name: r.names[0], Engine: r.engine}, nil
	}
	for _, n := range r.names {
		if n == name {
			return Target{Name: n, Engine: r.engine}, nil
		}
	}
	return Target{}, fmt.Errorf("%w: %q", ErrModelNotFound, name)
}

// Models implements ModelResolver.
func (r *StaticResolver) Models() []ModelCard {
	cards := make([]ModelCard, len(r.names))
	for i, n := range r.names {
		cards[i] = ModelCard{ID: n, Object: "model", Created: r.created, OwnedBy: "parrot",
			Root: r.names[0], MaxModelLen: r.engine.MaxModelLen()}
	}
	return cards
}
