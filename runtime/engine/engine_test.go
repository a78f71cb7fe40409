package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/runtime/llama"

	"github.com/parrot-llm/parrot/runtime/sampler"
)

// A request with many choices does not hold back the one behind it: with
// the first request's readers stalled (so its running choices stop at the
// event buffer), the second request still runs to the end.
func TestManyChoicesLeaveRoomForLaterRequests(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{MaxRunning: 4, MaxRunningPerGroup: 2})
	defer e.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := Request{PromptTokens: []int32{1}, MaxTokens: 3 * eventCapacity, IgnoreEOS: true, Sampling: greedy, Group: "A"}
	var stalled []<-chan Event
	for range 8 {
		ch, err := e.Submit(ctx, long)
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, ch)
	}
	later, err := e.Submit(ctx, Request{Prompt: "Once", MaxTokens: 20, Sampling: greedy, Group: "B"})
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-later:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			done = ev.Done
		case <-timeout:
			t.Fatal("the later request never ran: the first request's choices took every running slot")
		}
	}
	// Only the group's cap of choices ever started (the others wait for
	// room), and each stopped at the event buffer.
	started := 0
	for _, ch := range stalled {
		if n := len(ch); n > 0 {
			started++
			if n > eventCapacity {
				t.Errorf("a stalled choice buffered %d events, cap %d", n, eventCapacity)
			}
		}
	}
	if started != 2 {
		t.Errorf("%d choices of the first request started, want its cap of 2", started)
	}
}

// A reader that stops reading stalls only its own sequence, with at most
// eventCapacity events buffered; when it reads again it gets the whole
// output, unchanged.
func TestStalledReaderIsBoundedAndResumes(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{})
	defer e.Close(context.Background())
	req := Request{PromptTokens: []int32{1}, MaxTokens: 4 * eventCapacity, IgnoreEOS: true, Sampling: greedy}
	solo, _ := generate(t, e, req)
	ch, err := e.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the buffer is as full as the scheduler will make it.
	deadline := time.Now().Add(30 * time.Second)
	for len(ch) < eventCapacity-1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(ch); n < eventCapacity-1 || n > eventCapacity {
		t.Fatalf("stalled reader: %d events buffered, want %d or %d", n, eventCapacity-1, eventCapacity)
	}
	// Other requests still run while it stalls.
	if text, _ := generate(t, e, Request{Prompt: "Once", MaxTokens: 10, Sampling: greedy}); text == "" {
		t.Fatal("a request beside the stalled one produced nothing")
	}
	var text string
	n := 0
	for ev := range ch {
		text += ev.Text
		n++
	}
	if n != 4*eventCapacity+1 || text != solo {
		t.Fatalf("after the stall: %d events (want %d), text equal to solo: %v", n, 4*eventCapacity+1, text == solo)
	}
}

// scripted allows exactly one token at each step, then only EOS.
type scripted struct {
	tokens []int32
	eos    int32
	at     int
}

func (c *scripted) FillMask(mask []uint64) error {
	clear(mask)
	next := c.eos
	if c.at < len(c.tokens) {
		next = c.tokens[c.at]
	}
	mask[next/64] |= 1 << (next % 64)
	return nil
}

func (c *scripted) Consume(tok int32) error {
	want := c.eos
	if c.at < len(c.tokens) {
		want = c.tokens[c.at]
	}
	if tok != want {
		return fmt.Errorf("token %d, allowed only %d", tok, want)
	}
	c.at++
	return nil
}

// nothingAllowed is a matcher at a dead end.
type nothingAllowed struct{}

func (nothingAllowed) FillMask(mask []uint64) error { clear(mask); return nil }
func (nothingAllowed) Consume(int32) error          { return nil }

// The mask decides what a constrained sequence samples, whatever the model
// prefers, and EOS ends it where the grammar allows it; unconstrained
// sequences in the same batches are unaffected.
func TestConstraintMasksSampling(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{})
	defer e.Close(context.Background())
	free := Request{Prompt: "Once upon a time", MaxTokens: 30, Sampling: greedy}
	solo, _ := generate(t, e, free)

	script := []int32{300, 7, 42, 301, 9}
	eos := l.Model.Config.EOS[0]
	hot := Request{Prompt: "Once upon a time", MaxTokens: 30, Sampling: sampler.Params{Temperature: 1.5, TopP: 1}}
	hot.Constraint = &scripted{tokens: script, eos: eos}
	constrained, err := e.Submit(context.Background(), hot)
	if err != nil {
		t.Fatal(err)
	}
	beside, err := e.Submit(context.Background(), free)
	if err != nil {
		t.Fatal(err)
	}
	var got []int32
	var last Event
	for ev := range constrained {
		if !ev.Done {
			got = append(got, ev.Token)
		}
		last = ev
	}
	want := append(slices.Clone(script), eos)
	if !slices.Equal(got, want) || last.Err != nil || last.FinishReason != FinishStop {
		t.Errorf("constrained: tokens %v, want %v; final %+v", got, want, last)
	}
	text := ""
	for ev := range beside {
		text += ev.Text
	}
	if text != solo {
		t.Errorf("unconstrained beside a constrained one: %q, solo %q", text, solo)
	}

	dead := Request{Prompt: "Once", MaxTokens: 5, Sampling: greedy, Constraint: nothingAllowed{}}
	ch, err := e.Submit(context.Background(), dead)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range ch {
		last = ev
	}
	if !errors.Is(last.Err, ErrNoAllowedToken) {
		t.Errorf("dead-end constraint ended with %+v", last)
	}
}

// When the only running sequence is cancelled, the request waiting behind
// it starts at once, not when some later request wakes the engine.
func TestCancelledRunningMakesRoomForWaiting(t *testing.T) {
	l := loadStories(t, llama.QuantNF4)
	e := mustEngine(t, l, Options{MaxRunning: 1})
	defer e.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	// Never read: the first request fills its event buffer and waits for
	// its reader, holding the only running place.
	first, err := e.Submit(ctx, Request{PromptTokens: []int32{1}, MaxTokens: 4 * eventCapacity, IgnoreEOS: true, Sampling: greedy})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := e.Submit(context.Background(), Request{Prompt: "Once", MaxTokens: 5, Sampling: greedy})
	if err != nil {
		t.Fatal(err)
	}
	// Cancel only once the first one holds the running place and stalls.
	for deadline := time.Now().Add(30 * time.Second); len(first) < eventCapacity-1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the first request did not fill its buffer: %d events", len(first))
		}
	}
	cancel()
	timeout := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-queued:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			done = ev.Done
		case <-timeout:
			t.Fatal("the waiting request never started after the running one was cancelled")
		}
	}
}
