package engine

import (
	"slices"

	"github.com/parrot-llm/parrot/runtime/kvpool"
)

// schedLimits size one scheduling step.
type schedLimits struct {
	maxRunning int // sequences running at once
	perGroup   int // running sequences of one request group
	tokens     int // tokens per forward pass (decodes and prefill chunks)
	prefillCap int // prompt tokens one sequence may run per step
	blockSize  int // positions per KV block
}

// schedPool is what the scheduler asks of the KV pool (kvpool.Pool behind
// enginePool; a fake in tests).
type schedPool interface {
	numFree() int
	// prefixHit is how many leading tokens of a waiting sequence are
	// cached, and how many of their blocks no sequence holds now.
	prefixHit(s *sequence) (tokens, idleBlocks int)
	// exclusive is how many of a running sequence's blocks become free if
	// it is preempted (blocks it shares stay held).
	exclusive(s *sequence) int
}

// work is one sequence's share of a step: its next n tokens.
type work struct {
	s *sequence
	n int
}

// plan is what one step does: preempt some running sequences (free their
// blocks, back to the front of the queue), admit some waiting ones, and run
// tokens of both, decodes first.
type plan struct {
	preempt []*sequence // newest first
	admit   []*sequence // in queue order
	work    []work
}

// schedule plans one step, as vLLM's v1 scheduler does
// (vllm/v1/core/sched/scheduler.py): running sequences first, oldest
// first, each takes its next tokens within the token budget (a prompt at
// most prefillCap per step) and the blocks they need; when blocks run out,
// the newest running sequence is preempted (its KV recomputed when it
// resumes), possibly the one asking. Then, unless something was preempted,
// waiting sequences are admitted first come first served while sequences,
// their group's cap, tokens and blocks last. A waiting choice of a request
// whose identical prompt another choice is still prefilling waits for it,
// so that it shares those blocks instead of computing them again (n > 1
// prefills the prompt once).
//
// running is in admission order; a sequence whose reader lags behind
// (events full) takes no tokens but keeps its blocks. schedule changes
// nothing: the engine applies the plan.
func schedule(running, waiting []*sequence, pool schedPool, lim schedLimits) plan {
	var p plan
	free, budget := pool.numFree(), lim.tokens
	active := slices.Clone(running) // running and not preempted, oldest first
	// The running sequences planned so far: their tokens and the blocks
	// reserved for them, given back if a later one preempts them.
	type reservation struct{ tokens, blocks int }
	planned := map[*sequence]reservation{}

	// blocksFor is the number of new blocks s needs to hold n positions.
	blocksFor := func(s *sequence, n int) int {
		return max(0, (n+lim.blockSize-1)/lim.blockSize-s.heldBlocks())
	}
	// take reserves blocks for s, preempting the newest active sequences
	// not planned yet; false when s itself had to go.
	take := func(s *sequence, need int) bool {
		for need > free {
			victim := active[len(active)-1]
			active = active[:len(active)-1]
			p.preempt = append(p.preempt, victim)
			free += pool.exclusive(victim)
			if r, ok := planned[victim]; ok { // a decode planned before this prefill
				delete(planned, victim)
				budget += r.tokens
				free += r.blocks
			}
			if victim == s {
				return false
			}
		}
		free -= need
		return true
	}
	schedRunning := func(decode bool) {
		for i := 0; i < len(active) && budget > 0; i++ {
			s := active[i]
			pending := s.pending()
			if _, ok := planned[s]; ok || !s.ready() || pending == 0 || (pending == 1) != decode {
				continue
			}
			n := min(pending, budget)
			if !decode {
				n = min(n, lim.prefillCap)
			}
			need := blocksFor(s, s.computed()+n)
			if !take(s, need) {
				continue // s was preempted; active shrank past it
			}
			planned[s] = reservation{n, need}
			p.work = append(p.work, work{s, n})
			budget -= n
		}
	}
	schedRunning(true)
	schedRunning(false)
	if len(p.preempt) > 0 {
		p.work = slices.DeleteFunc(p.work, func(w work) bool {
			_, ok := planned[w.s]
			return !ok
		})
		return p
	}

	inGroup := map[string]int{}
	prefilling := map[kvpool.Hash]bool{} // prompt keys still being prefilled
	for _, s := range active {
		if g := s.req.Group; g != "" {
			inGroup[g]++
		}
		if s.computed() < len(s.prompt) { // its blocks are committed after the step
			prefilling[s.promptKey] = true
		}
	}
	for _, s := range waiting {
		if len(active)+len(p.admit) >= lim.maxRunning || budget <= 0 {
			break
		}
		g := s.req.Group
		if g != "" && inGroup[g] >= lim.perGroup || prefilling[s.promptKey] {
			continue // keeps its place; later ones may pass
		}
		hit, idle := pool.prefixHit(s)
		n := min(len(s.all)-hit, budget, lim.prefillCap)
		need := idle + (hit+n+lim.blockSize-1)/lim.blockSize - hit/lim.blockSize
		if need > free {
			break // first come first served: no one passes for blocks
		}
		free -= need
		budget -= n
		if g != "" {
			inGroup[g]++
		}
		prefilling[s.promptKey] = true
		p.admit = append(p.admit, s)
		p.work = append(p.work, work{s, n})
	}
	return p
}
