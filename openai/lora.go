package openai

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/adapters"
	"github.com/parrot-llm/parrot/runtime/engine"
)

// LoRAResolver serves the base model under its names and every registered
// LoRA adapter under its own name, on the base model's engine.
type LoRAResolver struct {
	base    *StaticResolver
	engine  *engine.Engine
	pool    *adapters.Pool
	created int64
}

// NewLoRAResolver adds the pool's adapters to the base model's names.
func NewLoRAResolver(base *StaticResolver, engine *engine.Engine, pool *adapters.Pool) *LoRAResolver {
	return &LoRAResolver{base: base, engine: engine, pool: pool, created: time.Now().Unix()}
}

// Resolve implements ModelResolver: base names first, then adapters.
func (r *LoRAResolver) Resolve(name string) (Target, error) {
	t, err := r.base.Resolve(name)
	if err == nil || !r.pool.Registry().Has(name) {
		return t, err
	}
	return Target{Name: name, Engine: &adapters.Generator{Engine: r.engine, Pool: r.pool, Name: name}}, nil
}

// Models implements ModelResolver: the base cards, then one card per
// servable adapter, whose parent and root name the base model (vLLM).
func (r *LoRAResolver) Models() []ModelCard {
	cards := r.base.Models()
	baseName := r.base.names[0]
	for _, info := range r.pool.Adapters() {
		if info.Status == adapters.StatusError {
			continue
		}
		cards = append(cards, ModelCard{ID: info.Name, Object: "model", Created: r.created, OwnedBy: "parrot",
			Root: baseName, Parent: baseName, MaxModelLen: r.engine.MaxModelLen()})
	}
	return cards
}

// adapterError maps the adapter errors of Submit; ok is false for others.
func adapterError(err error) (*APIError, bool) {
	var refused *adapters.RefusedError
	switch {
	case errors.Is(err, adapters.ErrNotFound): // removed between resolve and submit
		e := modelNotFound("")
		e.Message = err.Error()
		return e, true
	case errors.As(err, &refused):
		return badRequest("model", "%v", err), true
	}
	return nil, false
}

// loadLoRAAdapter is vLLM's POST /v1/load_lora_adapter.
func (s *Server) loadLoRAAdapter(c echo.Context) error {
	var req adapters.LoadLoRAAdapterRequest
	if apiErr := decodeBody(c, s.opts.MaxBodyBytes, &req); apiErr != nil {
		return writeError(c, apiErr)
	}
	pool, apiErr := s.loraPool()
	if apiErr != nil {
		return writeError(c, apiErr)
	}
	msg, err := pool.LoadAdapter(req)
	return adminReply(c, msg, err)
}

// unloadLoRAAdapter is vLLM's POST /v1/unload_lora_adapter.
func (s *Server) unloadLoRAAdapter(c echo.Context) error {
	var req adapters.UnloadLoRAAdapterRequest
	if apiErr := decodeBody(c, s.opts.MaxBodyBytes, &req); apiErr != nil {
		return writeError(c, apiErr)
	}
	pool, apiErr := s.loraPool()
	if apiErr != nil {
		return writeError(c, apiErr)
	}
	msg, err := pool.UnloadAdapter(req)
	return adminReply(c, msg, err)
}

// loraPool is the adapter pool of the served models, once loaded.
func (s *Server) loraPool() (*adapters.Pool, *APIError) {
	r, apiErr := s.resolver()
	if apiErr != nil {
		return nil, apiErr
	}
	lr, ok := r.(*LoRAResolver)
	if !ok {
		return nil, badRequest("", "LoRA adapters are not enabled on this server.")
	}
	return lr.pool, nil
}

// adminReply answers as vLLM does: plain text on success, its error object
// otherwise, with the status and error type vLLM gives that kind of error.
func adminReply(c echo.Context, msg string, err error) error {
	var ae *adapters.AdminError
	if errors.As(err, &ae) {
		status, typ := http.StatusBadRequest, "BadRequestError"
		switch {
		case errors.Is(ae, adapters.ErrInvalidInput):
			typ = "InvalidUserInput"
		case errors.Is(ae, adapters.ErrNotFound):
			status, typ = http.StatusNotFound, "NotFoundError"
		}
		return c.JSON(status, map[string]any{"object": "error", "message": ae.Message, "type": typ, "code": status})
	}
	if err != nil {
		return err
	}
	return c.String(http.StatusOK, msg)
}
