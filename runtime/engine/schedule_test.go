package engine

import (
	"slices"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/llama"

	"github.com/parrot-llm/parrot/runtime/kvpool"
)

// fakePool is a KV pool reduced to what schedule asks.
type fakePool struct {
	free int
	hit  map[*sequence][2]int // prefix hit tokens, idle blocks
	excl map[*sequence]int
}

func (f *fakePool) numFree() int { return f.free }
func (f *fakePool) prefixHit(s *sequence) (int, int) {
	h := f.hit[s]
	return h[0], h[1]
}
func (f *fakePool) exclusive(s *sequence) int {
	if n, ok := f.excl[s]; ok {
		return n
	}
	return s.heldBlocks()
}

// waitingSeq is a queued sequence of a prompt of n tokens; id tells
// sequences apart in failure messages.
func waitingSeq(id, n int, group string) *sequence {
	all := make([]int32, n)
	for i := range all {
		all[i] = int32(id*1000 + i)
	}
	return &sequence{req: Request{Group: group}, all: all, prompt: all, maxNew: id,
		promptKey: kvpool.ChainHashes(kvpool.Seed("", ""), all, n, nil)[0]}
}

// runningSeq is a sequence with computed positions in cache and pending
// tokens still to run (1 = decoding).
func runningSeq(id, computed, pending int, group string, blockSize int) *sequence {
	s := waitingSeq(id, computed+pending, group)
	s.cache = cacheAt(computed, blockSize)
	return s
}

// cacheAt is a cache holding computed positions, in a pool of its own.
func cacheAt(computed, blockSize int) *llama.KVCache {
	pool, err := kvpool.New(kernels.HostMemory{}, kvpool.Shape{Layers: 1, KVHeads: 1, HeadDim: 1}, blockSize, 64)
	if err != nil {
		panic(err)
	}
	var t kvpool.Table
	if err := pool.Grow(&t, computed); err != nil {
		panic(err)
	}
	c := llama.NewSeqCache(pool, 1<<20)
	c.Share(t.Blocks, computed)
	return c
}

func ids(seqs []*sequence) []int {
	out := make([]int, len(seqs))
	for i, s := range seqs {
		out[i] = s.maxNew
	}
	return out
}

func workOf(p plan) [][2]int {
	var out [][2]int
	for _, w := range p.work {
		out = append(out, [2]int{w.s.maxNew, w.n})
	}
	return out
}

var roomy = schedLimits{maxRunning: 100, perGroup: 100, tokens: 1000, prefillCap: 1000, blockSize: 4}

func TestScheduleCapsEachGroupAndKeepsQueueOrder(t *testing.T) {
	// Queue: six choices of request A, then B, then an ungrouped request,
	// then two of C.
	var waiting []*sequence
	for i, g := range []string{"A", "A", "A", "A", "A", "A", "B", "", "C", "C"} {
		waiting = append(waiting, waitingSeq(i, 1, g))
		waiting[i].promptKey[0] = byte(i) // different prompts
	}
	lim := roomy
	lim.maxRunning, lim.perGroup = 5, 2
	p := schedule(nil, waiting, &fakePool{free: 100}, lim)
	if got, want := ids(p.admit), []int{0, 1, 6, 7, 8}; !slices.Equal(got, want) {
		t.Errorf("admitted %v, want %v (first come within the caps)", got, want)
	}

	// Running sequences count against their group and the total.
	running := []*sequence{runningSeq(10, 4, 1, "A", 4), runningSeq(11, 4, 1, "B", 4)}
	lim.maxRunning = 4
	more := []*sequence{waitingSeq(0, 1, "A"), waitingSeq(1, 1, "A"), waitingSeq(2, 1, "B"), waitingSeq(3, 1, "D")}
	p = schedule(running, more, &fakePool{free: 100}, lim)
	if got, want := ids(p.admit), []int{0, 2}; !slices.Equal(got, want) {
		t.Errorf("with A and B running: admitted %v, want %v", got, want)
	}
	lim.maxRunning = 2
	if p := schedule(running, more, &fakePool{free: 100}, lim); len(p.admit) != 0 {
		t.Errorf("full engine admitted %v", ids(p.admit))
	}
}

func TestScheduleTokenBudgetDecodesFirstAndCapsPrefill(t *testing.T) {
	lim := schedLimits{maxRunning: 10, perGroup: 10, tokens: 10, prefillCap: 4, blockSize: 4}
	prefilling := runningSeq(1, 0, 9, "", 4) // admitted, nothing computed yet
	decoding := []*sequence{runningSeq(2, 5, 1, "", 4), runningSeq(3, 6, 1, "", 4)}
	waiting := []*sequence{waitingSeq(4, 20, ""), waitingSeq(5, 3, "")}
	running := append([]*sequence{prefilling}, decoding...)
	p := schedule(running, waiting, &fakePool{free: 100}, lim)
	// Decodes (1 each), the running prompt's chunk capped at 4, then the
	// first waiting prompt gets the 4 tokens left (cap 4), the second none.
	want := [][2]int{{2, 1}, {3, 1}, {1, 4}, {4, 4}}
	if got := workOf(p); !slices.Equal(got, want) {
		t.Errorf("work %v, want %v", got, want)
	}
	if got := ids(p.admit); !slices.Equal(got, []int{4}) {
		t.Errorf("admitted %v, want [4]", got)
	}
}

func TestScheduleAdmitsWhileBlocksLast(t *testing.T) {
	lim := roomy
	// A prompt of 9 tokens needs 3 blocks of 4; 5 free: the first fits,
	// the second (3 more) does not, and the small third may not pass it.
	waiting := []*sequence{waitingSeq(1, 9, ""), waitingSeq(2, 9, ""), waitingSeq(3, 1, "")}
	p := schedule(nil, waiting, &fakePool{free: 5}, lim)
	if got := ids(p.admit); !slices.Equal(got, []int{1}) {
		t.Errorf("admitted %v, want [1]", got)
	}
	// A prefix hit of 8 tokens (2 blocks, one idle) leaves 1 token to run
	// and needs 1 idle block taken back + 1 new block.
	pool := &fakePool{free: 2, hit: map[*sequence][2]int{waiting[0]: {8, 1}}}
	p = schedule(nil, waiting, pool, lim)
	if got, want := workOf(p), [][2]int{{1, 1}}; !slices.Equal(got, want) {
		t.Errorf("with a prefix hit: work %v, want %v", got, want)
	}
}

func TestSchedulePreemptsTheNewest(t *testing.T) {
	lim := roomy
	// Three decoding sequences, each at a block boundary (needs a new
	// block), one block free: the oldest takes it, the next needs one and
	// the newest is preempted for it.
	a, b, c := runningSeq(1, 4, 1, "", 4), runningSeq(2, 8, 1, "", 4), runningSeq(3, 4, 1, "", 4)
	waiting := []*sequence{waitingSeq(9, 1, "")}
	p := schedule([]*sequence{a, b, c}, waiting, &fakePool{free: 1}, lim)
	if got := ids(p.preempt); !slices.Equal(got, []int{3}) {
		t.Errorf("preempted %v, want [3]", got)
	}
	if got, want := workOf(p), [][2]int{{1, 1}, {2, 1}}; !slices.Equal(got, want) {
		t.Errorf("work %v, want %v", got, want)
	}
	if len(p.admit) != 0 {
		t.Errorf("admitted %v in a step that preempted", ids(p.admit))
	}

	// With no block free and the oldest in need, the newest go first; the
	// asking sequence preempts itself when it is the newest left.
	p = schedule([]*sequence{a, b}, nil, &fakePool{free: 0, excl: map[*sequence]int{b: 0}}, lim)
	if got := ids(p.preempt); !slices.Equal(got, []int{2, 1}) {
		t.Errorf("preempted %v, want [2 1] (b freed nothing, so a preempts itself)", got)
	}
	if len(p.work) != 0 {
		t.Errorf("work %v after preempting everyone", workOf(p))
	}

	// An older prefill preempting a newer decode planned before it gives
	// the decode's block and tokens back.
	old := runningSeq(1, 4, 8, "", 4) // needs 2 blocks for 8 more tokens
	young := runningSeq(2, 4, 1, "", 4)
	p = schedule([]*sequence{old, young}, nil, &fakePool{free: 2}, lim)
	if got := ids(p.preempt); !slices.Equal(got, []int{2}) {
		t.Errorf("preempted %v, want [2]", got)
	}
	if got, want := workOf(p), [][2]int{{1, 8}}; !slices.Equal(got, want) {
		t.Errorf("work %v, want %v", got, want)
	}
}

func TestScheduleChoicesOfOnePromptPrefillOnce(t *testing.T) {
	lim := roomy
	a, b := waitingSeq(1, 9, "req"), waitingSeq(1, 9, "req")
	b.maxNew = 2
	p := schedule(nil, []*sequence{a, b}, &fakePool{free: 100}, lim)
	if got := ids(p.admit); !slices.Equal(got, []int{1}) {
		t.Fatalf("admitted %v: the second choice should wait for the first's prompt", got)
	}
	// Once the first choice has its prompt computed, the second is admitted.
	a.cache = cacheAt(9, 4)
	a.all = append(a.all, 5)
	p = schedule([]*sequence{a}, []*sequence{b}, &fakePool{free: 100}, lim)
	if got := ids(p.admit); !slices.Equal(got, []int{2}) {
		t.Errorf("admitted %v after the prompt was computed", got)
	}
}
