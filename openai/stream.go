package openai

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/runtime/engine"
)

// sseWriter writes server-sent events as OpenAI does: "data: <json>\n\n"
// per event and "data: [DONE]\n\n" at the end.
type sseWriter struct {
	c   echo.Context
	err error // first write error (the client went away); later writes are skipped
}

func startSSE(c echo.Context) *sseWriter {
	h := c.Response().Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // no proxy buffering (nginx)
	c.Response().WriteHeader(http.StatusOK)
	c.Response().Flush()
	return &sseWriter{c: c}
}

func (w *sseWriter) data(payload []byte) error { return w.event("", payload) }

// event writes one event, named when name is set ("event: NAME" before its
// data, as the Responses API streams).
func (w *sseWriter) event(name string, payload []byte) error {
	if w.err != nil {
		return w.err
	}
	var b strings.Builder
	b.Grow(len(payload) + len(name) + 16)
	if name != "" {
		b.WriteString("event: ")
		b.WriteString(name)
		b.WriteString("\n")
	}
	b.WriteString("data: ")
	b.Write(payload)
	b.WriteString("\n\n")
	if _, err := w.c.Response().Write([]byte(b.String())); err != nil {
		w.err = err
		return err
	}
	w.c.Response().Flush()
	return nil
}

// send writes v as one event.
func (w *sseWriter) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.data(b)
}

// fail sends an error event, then [DONE]: the stream's status is already 200.
func (w *sseWriter) fail(e *APIError) {
	_ = w.send(e.body())
	w.done()
}

func (w *sseWriter) done() { _ = w.data([]byte("[DONE]")) }

// AdapterVersionHeader carries, on a non-streamed response, the version of
// the adapter that produced it (streamed chunks carry it in
// system_fingerprint).
const AdapterVersionHeader = "X-Adapter-Version"

func setAdapterVersion(c echo.Context, version string) {
	if version != "" {
		c.Response().Header().Set(AdapterVersionHeader, version)
	}
}

// newID returns a response id such as "chatcmpl-…".
func newID(prefix string) string { return prefix + rand.Text() }

// usageJSON is the usage member of a chunk: null, or the counts.
func usageJSON(u *usage) json.RawMessage {
	if u == nil {
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(u) // a struct of ints cannot fail
	return b
}

// choiceEvent is an engine event tagged with its choice index.
type choiceEvent struct {
	index int
	ev    engine.Event
}

// submitAll submits one request per choice. If one is refused, those
// already queued are cancelled (by the caller's cancel of ctx).
func submitAll(ctx context.Context, eng Generator, reqs []engine.Request) ([]<-chan engine.Event, error) {
	chans := make([]<-chan engine.Event, 0, len(reqs))
	for _, r := range reqs {
		ch, err := eng.Submit(ctx, r)
		if err != nil {
			return nil, err
		}
		chans = append(chans, ch)
	}
	return chans, nil
}

// merge interleaves the events of several choices as they arrive. The
// returned channel closes when every choice has sent its final event or ctx
// ends.
func merge(ctx context.Context, chans []<-chan engine.Event) <-chan choiceEvent {
	out := make(chan choiceEvent)
	var wg sync.WaitGroup
	for i, ch := range chans {
		wg.Go(func() {
			for ev := range ch {
				select {
				case out <- choiceEvent{index: i, ev: ev}:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// generationError maps a final event's error: nil and true when the client
// went away (nothing to send).
func generationError(err error, reqID string) (*APIError, bool) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil, true
	}
	return internalError(reqID), false
}
