package engine

// eventCapacity bounds the events a sequence may have waiting for its
// reader. A sequence whose reader falls this far behind is not stepped
// until the reader catches up (backpressure: its KV cache stays, but its
// buffered output does not grow), and the HTTP layer's write timeout
// cancels it if the reader never comes back.
const eventCapacity = 64

// eventQueue hands a sequence's events from the scheduler to its reader.
// Only the scheduler pushes, and it steps a sequence only while hasRoom, so
// a push never blocks: a step pushes at most two events (a token and the
// final one), and a finish without a step pushes one.
type eventQueue struct {
	ch chan Event
}

func newEventQueue() *eventQueue {
	return &eventQueue{ch: make(chan Event, eventCapacity)}
}

// hasRoom reports whether the sequence may take a step.
func (q *eventQueue) hasRoom() bool { return cap(q.ch)-len(q.ch) >= 2 }

// push queues ev; the Done event is the last one pushed and closes the queue.
func (q *eventQueue) push(ev Event) {
	q.ch <- ev
	if ev.Done {
		close(q.ch)
	}
}
