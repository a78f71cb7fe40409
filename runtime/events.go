package runtime

import (
	"context"
	"sync"
	"time"
)

// eventQueue hands a sequence's events from the scheduler to its reader
// without ever blocking the scheduler and without preallocating room for
// every possible token: push appends to a slice, and a goroutine forwards
// to the reader's channel at the reader's pace.
type eventQueue struct {
	ctx  context.Context
	out  chan Event
	wake chan struct{} // a push happened

	mu     sync.Mutex
	buf    []Event
	closed bool // the final event was pushed
}

// abandonGrace is how long the forwarder keeps offering events to a reader
// whose request was cancelled, before it assumes the reader is gone.
const abandonGrace = 2 * time.Second

func newEventQueue(ctx context.Context) *eventQueue {
	q := &eventQueue{ctx: ctx, out: make(chan Event, 16), wake: make(chan struct{}, 1)}
	go q.forward()
	return q
}

// push queues ev; the Done event must be the last one pushed.
func (q *eventQueue) push(ev Event) {
	q.mu.Lock()
	q.buf = append(q.buf, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) forward() {
	defer close(q.out)
	for range q.wake {
		q.mu.Lock()
		evs := q.buf
		q.buf = nil
		q.mu.Unlock()
		for _, ev := range evs {
			if !q.send(ev) || ev.Done {
				return
			}
		}
	}
}

// send delivers ev, giving up on a cancelled request whose reader stopped
// reading (so the goroutine does not leak).
func (q *eventQueue) send(ev Event) bool {
	select {
	case q.out <- ev:
		return true
	case <-q.ctx.Done():
	}
	t := time.NewTimer(abandonGrace)
	defer t.Stop()
	select {
	case q.out <- ev:
		return true
	case <-t.C:
		return false
	}
}
