package adapters

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// Generator serves one adapter on the base model's engine: each request
// holds a lease on the adapter's current version from Submit until the
// engine finishes it. It has the method set of openai.Generator.
type Generator struct {
	Engine *engine.Engine
	Pool   *Pool
	Name   string // the adapter
}

// Submit claims the adapter's current version (reading it if no slot or
// other request has it), sets the claim as req.Adapter and queues the
// request on the engine, whose scheduler gives it a slot when it admits it.
// Errors besides the engine's: ErrNotFound, *RefusedError, or a busy error
// (matching engine.ErrOverloaded) when the adapter's files stay in flux.
func (g *Generator) Submit(ctx context.Context, req engine.Request) (<-chan engine.Event, error) {
	c, err := g.Pool.Claim(ctx, g.Name)
	if err != nil {
		return nil, err
	}
	req.Adapter = c
	events, err := g.Engine.Submit(ctx, req) // releases the claim if it fails
	if err != nil {
		return nil, err
	}
	m := g.Pool.metrics
	if m == nil {
		return events, nil
	}
	m.Request(g.Name)
	// Count the tokens from the final event on the way through.
	out := make(chan engine.Event, cap(events))
	go func() {
		defer close(out)
		for ev := range events {
			if ev.Done {
				m.Tokens(g.Name, ev.Usage.PromptTokens, ev.Usage.CompletionTokens)
			}
			select {
			case out <- ev:
			case <-ctx.Done(): // a cancelled request's reader may be gone: drop, don't block
			}
		}
	}()
	return out, nil
}

// Tokenize, MaxModelLen and Loaded are the base engine's.
func (g *Generator) Tokenize(req *engine.Request) ([]int32, error) { return g.Engine.Tokenize(req) }
func (g *Generator) MaxModelLen() int                              { return g.Engine.MaxModelLen() }
func (g *Generator) Loaded() *llama.Loaded                         { return g.Engine.Loaded() }

// ParseLoRASpec splits a --lora flag value "name=path".
func ParseLoRASpec(spec string) (name, path string, err error) {
	name, path, ok := strings.Cut(spec, "=")
	name, path = strings.TrimSpace(name), strings.TrimSpace(path)
	if !ok || name == "" || path == "" {
		return "", "", fmt.Errorf("--lora %q: want name=path", spec)
	}
	return name, path, nil
}

// LoadLoRAAdapterRequest is the body of POST /v1/load_lora_adapter (vLLM).
type LoadLoRAAdapterRequest struct {
	LoraName string `json:"lora_name"`
	LoraPath string `json:"lora_path"`
}

// UnloadLoRAAdapterRequest is the body of POST /v1/unload_lora_adapter (vLLM).
type UnloadLoRAAdapterRequest struct {
	LoraName  string `json:"lora_name"`
	LoraIntID *int   `json:"lora_int_id,omitempty"` // accepted for compatibility; parrot names adapters only
}

// AdminError is a failed admin call: Message is the text vLLM answers
// with, Kind (matched by errors.Is) what went wrong: ErrInvalidInput,
// ErrNotFound or ErrRefused.
type AdminError struct {
	Kind    error
	Message string
}

func (e *AdminError) Error() string { return e.Message }
func (e *AdminError) Unwrap() error { return e.Kind }

// LoadAdapter does POST /v1/load_lora_adapter: it reads and validates the
// adapter at req.LoraPath (confined to the adapters directory) and registers
// it as req.LoraName; it becomes resident on first use. It returns vLLM's
// success text, or an *AdminError.
func (p *Pool) LoadAdapter(req LoadLoRAAdapterRequest) (string, error) {
	if req.LoraName == "" || req.LoraPath == "" {
		return "", &AdminError{ErrInvalidInput, "Both 'lora_name' and 'lora_path' must be provided."}
	}
	if p.reg.Has(req.LoraName) {
		return "", &AdminError{ErrInvalidInput, fmt.Sprintf("The lora adapter '%s' has already been loaded.", req.LoraName)}
	}
	// The messages name the adapter, the caller's own lora_path and a
	// reason, never a server path; the log has the paths.
	if err := p.reg.AddAdmin(req.LoraName, req.LoraPath); err != nil {
		p.log.Warn("adapter load refused", "adapter", req.LoraName, "lora_path", req.LoraPath, "err", logDetail(err))
		switch {
		case errors.Is(err, ErrExists):
			return "", &AdminError{ErrInvalidInput, err.Error()}
		case errors.Is(err, fs.ErrNotExist):
			return "", &AdminError{ErrNotFound, fmt.Sprintf("No adapter found for %s: %v", req.LoraPath, err)}
		}
		return "", &AdminError{ErrRefused, err.Error()}
	}
	// Refuse it now rather than on its first request, as vLLM does.
	e, _ := p.reg.lookup(req.LoraName)
	if _, err := p.read(e); err != nil {
		p.log.Warn("adapter load refused", "adapter", req.LoraName, "path", e.path, "err", logDetail(err))
		p.reg.Remove(req.LoraName)
		return "", &AdminError{ErrRefused, fmt.Sprintf("adapter %q: %v", req.LoraName, err)}
	}
	return fmt.Sprintf("Success: LoRA adapter '%s' added successfully.", req.LoraName), nil
}

// UnloadAdapter does POST /v1/unload_lora_adapter: the adapter is no longer
// served; requests holding it finish on it and its slot is freed once idle.
func (p *Pool) UnloadAdapter(req UnloadLoRAAdapterRequest) (string, error) {
	if req.LoraName == "" {
		return "", &AdminError{ErrInvalidInput, "'lora_name' needs to be provided."}
	}
	if err := p.reg.Remove(req.LoraName); err != nil {
		return "", &AdminError{ErrNotFound, fmt.Sprintf("The lora adapter '%s' cannot be found.", req.LoraName)}
	}
	return fmt.Sprintf("Success: LoRA adapter '%s' removed successfully.", req.LoraName), nil
}
