// Package openai serves models over the OpenAI HTTP API (chat completions,
// completions, models) plus vLLM's /tokenize and /detokenize, /health and
// Prometheus /metrics, on echo. It holds no model logic: requests are
// decoded and validated here, run by a engine.Engine, and its events are
// written back as OpenAI JSON or server-sent events.
package openai

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMaxBodyBytes is the request body limit when Options leaves it 0.
const DefaultMaxBodyBytes = 4 << 20

// Options configure a Server.
type Options struct {
	// LoRAAdmin enables vLLM's POST /v1/load_lora_adapter and
	// /v1/unload_lora_adapter (behind the API keys), served once SetModels
	// is given a *LoRAResolver.
	LoRAAdmin bool
	// APIKeys, if any, are the accepted Bearer tokens for /v1/*, /tokenize
	// and /detokenize. /health and /metrics stay open, as in vLLM.
	APIKeys []string
	// MaxBodyBytes limits request bodies (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// ReadBodyTimeout bounds the time to receive a request body, and
	// WriteTimeout the time a client may take to accept each write of a
	// response (each event of a stream). 0 = the defaults; < 0 = none.
	ReadBodyTimeout, WriteTimeout time.Duration
	// Logger receives one line per request, with its request id.
	// nil = slog.Default().
	Logger *slog.Logger
	// Gatherer, if set, is served at /metrics.
	Gatherer prometheus.Gatherer
	// Playground, if set, serves the chat page: GET / and /playground/*,
	// open like /health (the page's own API calls carry the key).
	Playground http.Handler
}

// Server is the HTTP front end. It answers 503 until SetModels is called,
// so it can listen while the model loads.
type Server struct {
	opts Options
	log  *slog.Logger
	echo *echo.Echo

	mu       sync.RWMutex
	models   ModelResolver // nil while loading
	draining bool

	inFlight sync.WaitGroup // generation and admin requests being served
	vocabs   vocabularies   // grammar vocabularies of the served models, for structured outputs
}

// New builds a server; it serves nothing but 503s until SetModels.
func New(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&opts.ReadBodyTimeout, DefaultReadBodyTimeout}, {&opts.WriteTimeout, DefaultWriteTimeout}} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			*d.v = 0
		}
	}
	s := &Server{opts: opts, log: opts.Logger, echo: echo.New()}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(s.requestLog, s.deadlines)

	e.GET(HealthPath, s.health)
	e.HEAD(HealthPath, s.health)
	e.GET(LivenessPath, live)
	e.HEAD(LivenessPath, live)
	if opts.Gatherer != nil {
		h := promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})
		e.GET("/metrics", echo.WrapHandler(h))
	}
	// Auth is per route (not an echo Group, whose catch-all routes would
	// turn a wrong method into 404 instead of 405).
	e.GET("/v1/models", s.listModels, s.auth)
	e.GET("/v1/models/:model", s.getModel, s.auth)
	e.POST("/v1/chat/completions", s.chatCompletions, s.auth, s.track)
	e.POST("/v1/completions", s.completions, s.auth, s.track)
	e.POST("/v1/responses", s.responses, s.auth, s.track)
	e.POST("/tokenize", s.tokenize, s.auth)
	e.POST("/detokenize", s.detokenize, s.auth)
	if opts.Playground != nil {
		h := echo.WrapHandler(opts.Playground)
		for _, path := range []string{"/", "/playground/*"} {
			e.GET(path, h)
			e.HEAD(path, h)
		}
	}
	if opts.LoRAAdmin {
		e.POST("/v1/load_lora_adapter", s.loadLoRAAdapter, s.auth, s.track)
		e.POST("/v1/unload_lora_adapter", s.unloadLoRAAdapter, s.auth, s.track)
	}
	return s
}

// Handler returns the HTTP handler (for an http.Server or httptest).
func (s *Server) Handler() http.Handler { return s.echo }

// SetModels makes the server ready: requests now resolve through r.
func (s *Server) SetModels(r ModelResolver) {
	s.mu.Lock()
	s.models = r
	s.mu.Unlock()
}

// SetDraining marks the server as shutting down: /health and new requests
// get 503 with Retry-After while in-flight requests finish.
func (s *Server) SetDraining() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

// Drain marks the server as draining and waits until the generation and
// admin requests in flight have finished, or ctx ends. Keep listening
// meanwhile: new requests are answered 503 (so a load balancer retries them
// elsewhere) rather than refused at the socket.
func (s *Server) Drain(ctx context.Context) error {
	s.SetDraining()
	done := make(chan struct{})
	go func() {
		s.inFlight.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// track counts a request as in flight for Drain; one that arrives while
// draining is refused.
func (s *Server) track(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		s.mu.RLock()
		draining := s.draining
		if !draining {
			s.inFlight.Add(1) // under the lock: Drain's Wait cannot miss it
		}
		s.mu.RUnlock()
		if draining {
			c.Response().Header().Set("Connection", "close")
			return unavailable("The server is shutting down.")
		}
		defer s.inFlight.Done()
		return next(c)
	}
}

// resolver returns the models, or a 503 while loading or draining.
func (s *Server) resolver() (ModelResolver, *APIError) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case s.draining:
		return nil, unavailable("The server is shutting down.")
	case s.models == nil:
		return nil, unavailable("The model is still loading.")
	}
	return s.models, nil
}

// decodeAndResolve reads a request body into req and resolves the model
// name it carries (model points into req).
func (s *Server) decodeAndResolve(c echo.Context, req any, model *string) (Target, *APIError) {
	if apiErr := decodeBody(c, s.opts.MaxBodyBytes, req); apiErr != nil {
		return Target{}, apiErr
	}
	return s.resolve(*model)
}

// resolve finds the target for a request's model name.
func (s *Server) resolve(name string) (Target, *APIError) {
	r, apiErr := s.resolver()
	if apiErr != nil {
		return Target{}, apiErr
	}
	t, err := r.Resolve(name)
	if errors.Is(err, ErrModelNotFound) {
		return Target{}, modelNotFound(name)
	}
	if err != nil {
		return Target{}, badRequest("model", "%v", err)
	}
	return t, nil
}

// The probe routes, open like /metrics. HealthPath is readiness (vLLM's
// /health): 200 once a model is served, 503 while it loads or the server
// drains, so a balancer or a Kubernetes readiness probe sends traffic
// elsewhere. LivenessPath is 200 whenever the process serves HTTP, loading
// and draining included, so a liveness probe restarts only a server that
// stopped answering, never one that is loading a model or finishing its
// requests.
const (
	HealthPath   = "/health"
	LivenessPath = "/livez"
)

// live answers the liveness probe.
func live(c echo.Context) error { return c.NoContent(http.StatusOK) }

// health is 200 once a model is served, 503 while loading or draining.
func (s *Server) health(c echo.Context) error {
	if _, apiErr := s.resolver(); apiErr != nil {
		return apiErr
	}
	return c.NoContent(http.StatusOK)
}

func (s *Server) listModels(c echo.Context) error {
	r, apiErr := s.resolver()
	if apiErr != nil {
		return apiErr
	}
	return c.JSON(http.StatusOK, modelList{Object: "list", Data: r.Models()})
}

func (s *Server) getModel(c echo.Context) error {
	r, apiErr := s.resolver()
	if apiErr != nil {
		return apiErr
	}
	name := c.Param("model")
	for _, m := range r.Models() {
		if m.ID == name {
			return c.JSON(http.StatusOK, m)
		}
	}
	return modelNotFound(name)
}

// auth checks the Bearer token when API keys are configured.
func (s *Server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if len(s.opts.APIKeys) == 0 {
			return next(c)
		}
		h := c.Request().Header.Get("Authorization")
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || token == "" {
			c.Response().Header().Set("WWW-Authenticate", "Bearer")
			return &APIError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: "invalid_api_key",
				Message: "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'."}
		}
		match := 0
		for _, k := range s.opts.APIKeys {
			match |= subtle.ConstantTimeCompare([]byte(token), []byte(k))
		}
		if match != 1 {
			c.Response().Header().Set("WWW-Authenticate", "Bearer")
			return &APIError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: "invalid_api_key",
				Message: "Incorrect API key provided."}
		}
		return next(c)
	}
}

// ctxKey names the per-request values stored in the echo context.
const (
	ctxLogger = "parrot.logger"
	ctxReqID  = "parrot.request_id"
)

func requestID(c echo.Context) string {
	id, _ := c.Get(ctxReqID).(string)
	return id
}

func (s *Server) logger(c echo.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger).(*slog.Logger); ok {
		return l
	}
	return s.log
}

// validRequestID accepts a client's X-Request-Id if it is short and printable.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// requestLog gives each request an id (the client's X-Request-Id, or a new
// one), logs one line when it ends, and turns a panic into a 500.
func (s *Server) requestLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		start := time.Now()
		req := c.Request()
		id := req.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = rand.Text()
		}
		c.Response().Header().Set("X-Request-Id", id)
		log := s.log.With("request_id", id)
		c.Set(ctxReqID, id)
		c.Set(ctxLogger, log)
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic while serving a request", "panic", p, "stack", string(debug.Stack()))
				err = internalError(id)
			}
			if err != nil {
				c.Error(err)
				err = nil
			}
			level := slog.LevelInfo
			status := c.Response().Status
			switch {
			case status == http.StatusInternalServerError:
				level = slog.LevelError
			case status >= 500:
				level = slog.LevelWarn // loading, draining
			case req.URL.Path == HealthPath || req.URL.Path == LivenessPath || req.URL.Path == "/metrics":
				level = slog.LevelDebug
			}
			log.Log(req.Context(), level, "request",
				"method", req.Method, "path", req.URL.Path, "status", status,
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
				"bytes_out", c.Response().Size, "remote", c.RealIP())
		}()
		return next(c)
	}
}

// handleError writes an error returned by a handler in the OpenAI shape.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		// A stream already started: its errors were sent in-band.
		s.logger(c).Debug("error after the response started", "err", err)
		return
	}
	var apiErr *APIError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &apiErr):
	case errors.As(err, &he):
		apiErr = &APIError{Status: he.Code, Type: typeInvalidRequest, Message: http.StatusText(he.Code)}
		switch he.Code {
		case http.StatusNotFound:
			apiErr.Message = "Unknown path " + c.Request().URL.Path + "."
		case http.StatusMethodNotAllowed:
			apiErr.Message = "Method " + c.Request().Method + " is not allowed on " + c.Request().URL.Path + "."
		}
		if he.Code >= 500 {
			apiErr = internalError(requestID(c))
			s.logger(c).Error("internal error", "err", err)
		}
	default:
		s.logger(c).Error("internal error", "err", err)
		apiErr = internalError(requestID(c))
	}
	if err := writeError(c, apiErr); err != nil {
		s.logger(c).Debug("writing an error response", "err", err)
	}
}
