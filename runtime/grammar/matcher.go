package grammar

import (
	"fmt"
	"math/bits"
	"sync"
)

// Default limits; see Options.
const (
	DefaultMaxStates = 20000 // lazily built automaton states per Grammar (256 int32 each)
	defaultMaxNodes  = 4_000_000
)

// Grammar is a compiled constraint bound to a vocabulary. Its automaton is
// built lazily as matchers explore it, so it holds a mutex: matchers of one
// Grammar may be used from several goroutines, and they serialise on it.
type Grammar struct {
	mu        sync.Mutex
	vocab     *Vocab
	b         *builder
	start     int32
	states    []expr         // state → expression (state 0 is dead)
	stateOf   map[expr]int32 // expression → state
	cls       [256]uint8     // byte → class: bytes no byte set of the grammar tells apart
	nclass    int
	trans     []int32 // state*nclass+class → state, -1 not yet computed
	wtrans    []int32 // as trans, but to walk states (see widen.go), premultiplied by nclass; -1 not yet computed
	walkOf    []int32 // state → its walk state (see widen.go), -1 not yet computed
	ltrans    []int32 // as wtrans, for the long walk states
	longOf    []int32 // state → its long walk state, -1 not yet computed
	accept    []bool  // state → the text so far is accepted
	plainNext []int32 // state → common successor on every plainByte, -1 none, -2 unknown
	majority  map[int32]plainSplit
	bulk      map[int32]bulkInfo
	loopYes   []asciiSet // state → ASCII bytes known to step it (as a walk state) to itself
	loopNo    []asciiSet // state → ASCII bytes known not to
	clsASCII  []asciiSet // class → its ASCII bytes
	charsNext []int32    // state → common successor over every multi-byte UTF-8 character, -1 none, -2 unknown
	maxStates int
	stack     []int32 // walk scratch: walk state (premultiplied by nclass) per trie depth
	masks     maskCache
	err       error // sticky: the automaton outgrew its limits
}

func newGrammar(v *Vocab, b *builder, start expr, maxStates int) (*Grammar, error) {
	if b.err != nil {
		return nil, b.err
	}
	if err := b.checkGuarded(); err != nil {
		return nil, err
	}
	if maxStates <= 0 {
		maxStates = DefaultMaxStates
	}
	g := &Grammar{vocab: v, b: b, stateOf: map[expr]int32{}, maxStates: maxStates}
	g.classes()
	g.addState(exprEmpty) // state 0: dead
	g.start = g.stateFor(start)
	if g.start == 0 {
		return nil, fmt.Errorf("grammar: the constraint admits no text")
	}
	g.stack = make([]int32, v.maxLen+1)
	g.masks.init((len(v.tokens) + 63) / 64)
	return g, nil
}

func (g *Grammar) addState(e expr) int32 {
	s := int32(len(g.states))
	g.states = append(g.states, e)
	g.stateOf[e] = s
	for range g.nclass {
		g.trans = append(g.trans, -1)
		g.wtrans = append(g.wtrans, -1)
		g.ltrans = append(g.ltrans, -1)
	}
	g.walkOf = append(g.walkOf, -1)
	g.longOf = append(g.longOf, -1)
	g.loopYes = append(g.loopYes, asciiSet{})
	g.loopNo = append(g.loopNo, asciiSet{})
	g.accept = append(g.accept, g.b.nodes[e].nullable)
	g.plainNext = append(g.plainNext, -2)
	g.charsNext = append(g.charsNext, -2)
	return s
}

// stateFor maps an expression to its state, 0 when it matches nothing.
func (g *Grammar) stateFor(e expr) int32 {
	if s, ok := g.stateOf[e]; ok {
		return s
	}
	if e == exprEmpty || (g.b.nodes[e].hasAnd && g.b.isEmpty(e)) {
		g.stateOf[e] = 0
		return 0
	}
	if len(g.states) >= g.maxStates {
		if g.err == nil {
			g.err = fmt.Errorf("grammar: more than %d automaton states", g.maxStates)
		}
		return 0
	}
	return g.addState(e)
}

// classes partitions the bytes so that every byte set in the grammar is a
// union of classes; derivatives (and so transitions) are equal within a
// class, and a state stores one transition per class instead of 256.
func (g *Grammar) classes() {
	// Partition refinement: each byte set splits every class into its
	// members and the rest (ids renumbered in byte order).
	var sig [256]uint16 // running class id per byte
	var remap [512]int16
	n := 1
	for i := range g.b.nodes {
		nd := &g.b.nodes[i]
		if nd.kind != kBytes {
			continue
		}
		for j := range 2 * n {
			remap[j] = -1
		}
		m := 0
		for c := 0; c < 256; c++ {
			k := 2 * sig[c]
			if nd.set.has(byte(c)) {
				k++
			}
			if remap[k] < 0 {
				remap[k] = int16(m)
				m++
			}
			sig[c] = uint16(remap[k])
		}
		n = m
	}
	for c := range 256 {
		g.cls[c] = uint8(sig[c])
	}
	g.nclass = n
	g.clsASCII = make([]asciiSet, n)
	for c := range 0x80 {
		g.clsASCII[sig[c]][c>>6] |= 1 << (c & 63)
	}
	// Representatives in searchOrder, so the emptiness search tries the
	// bytes that close JSON values first.
	seen := make([]bool, n)
	for _, c := range searchOrder {
		if k := g.cls[c]; !seen[k] {
			seen[k] = true
			g.b.reps = append(g.b.reps, c)
		}
	}
	g.b.cls = &g.cls
}

// step is the transition of state s on byte c.
func (g *Grammar) step(s int32, c byte) int32 {
	i := int(s)*g.nclass + int(g.cls[c])
	if t := g.trans[i]; t >= 0 {
		return t
	}
	t := g.stateFor(g.b.derivative(g.states[s], c))
	if g.b.err != nil && g.err == nil {
		g.err = g.b.err
	}
	g.trans[i] = t
	return t
}

// walkState is the state FillMask walks the main trie from for s: the
// state of its expression widened for split bytes (see widen.go), which
// has the same prefixes of at most split bytes, so the same mask over the
// trie's tokens and the same mask for every subtree below.
func (g *Grammar) walkState(s int32) int32 {
	return g.widenState(s, g.walkOf, g.vocab.split)
}

// longState is as walkState, for the long tokens (widened for maxLen).
func (g *Grammar) longState(s int32) int32 {
	return g.widenState(s, g.longOf, g.vocab.maxLen)
}

func (g *Grammar) widenState(s int32, of []int32, width int) int32 {
	if w := of[s]; w >= 0 {
		return w
	}
	w := s
	if s != 0 {
		if e := g.b.widen(g.states[s], width); e != g.states[s] {
			w = g.stateFor(e)
		}
	}
	// stateFor may have grown the tables: index them afresh.
	if width == g.vocab.split {
		of = g.walkOf
	} else {
		of = g.longOf
	}
	of[s] = w
	if w != s && of[w] < 0 {
		of[w] = w // widening is idempotent
	}
	return w
}

// walkStep is the walk state after byte c from walk state s.
func (g *Grammar) walkStep(s int32, c byte) int32 { return g.widenStep(s, c, false) }

// longStep is the long walk state after byte c from long walk state s.
func (g *Grammar) longStep(s int32, c byte) int32 { return g.widenStep(s, c, true) }

func (g *Grammar) widenStep(s int32, c byte, long bool) int32 {
	trans, width := g.wtrans, g.vocab.split
	if long {
		trans, width = g.ltrans, g.vocab.maxLen
	}
	i := int(s)*g.nclass + int(g.cls[c])
	if t := trans[i]; t >= 0 {
		return t / int32(g.nclass)
	}
	// The derivative is widened before it is numbered, so the exact
	// state (one per string position) is never built: Consume builds it
	// if the text goes there.
	e := g.b.derivative(g.states[s], c)
	if g.b.err != nil && g.err == nil {
		g.err = g.b.err
	}
	t := g.stateFor(g.b.widen(e, width))
	of := g.walkOf
	if long {
		of, trans = g.longOf, g.ltrans
	} else {
		trans = g.wtrans
	}
	if t != 0 && of[t] < 0 {
		of[t] = t // widening is idempotent
	}
	trans[i] = t * int32(g.nclass)
	return t
}

// plainSplit is where most plain bytes lead from a state (next, -1 if
// fewer than half agree or they die), and the plain bytes that go elsewhere.
type plainSplit struct {
	next int32
	exc  byteSet
}

func (g *Grammar) plainMajority(s int32) plainSplit {
	if p, ok := g.majority[s]; ok {
		return p
	}
	count := map[int32]int{}
	for c := 0x20; c < 0x7f; c++ {
		if plainByte(byte(c)) {
			count[g.walkStep(s, byte(c))]++
		}
	}
	p := plainSplit{next: -1}
	best := 0
	for t, n := range count {
		if n > best || (n == best && t < p.next) {
			p.next, best = t, n
		}
	}
	if p.next == 0 || best < 48 {
		p.next = -1
	} else {
		for c := 0x20; c < 0x7f; c++ {
			if plainByte(byte(c)) && g.walkStep(s, byte(c)) != p.next {
				p.exc.add(byte(c))
			}
		}
	}
	if g.majority == nil {
		g.majority = map[int32]plainSplit{}
	}
	g.majority[s] = p
	return p
}

// bulkInfo is how FillMask may cover string-safe tokens in bulk from a
// state: those of at most k characters, except those whose first byte is
// in exc. When exact, the state is a plain string run of at most n more
// characters (see builder.stringRun): a string-safe token is then allowed
// exactly when it has at most n characters, so the walk may skip every
// subtree holding only string-safe tokens.
type bulkInfo struct {
	k     int
	exc   byteSet
	exact bool
	n     int
}

// bulkFor finds the bulk cover of state s (see FillMask). A state that is
// "at most n more string characters, then the closing quote" is recognised
// from its expression; any other is probed byte by byte.
func (g *Grammar) bulkFor(s int32) bulkInfo {
	if bi, ok := g.bulk[s]; ok {
		return bi
	}
	limit := len(g.vocab.safeUpTo) - 1
	var bi bulkInfo
	if limit > 0 {
		if n, ok := g.b.stringRun(g.states[s]); ok {
			bi.k = min(n, limit)
			bi.exact, bi.n = true, n
		} else if p := g.plainMajority(s); p.next > 0 && g.multiByteTarget(s) == p.next {
			bi.exc = p.exc
			bi.k = 1
			if n, ok := g.b.stringRun(g.states[p.next]); ok {
				// After the first character the state is a plain run (as
				// in an additional property's name once it leaves every
				// listed name).
				bi.k = min(1+n, limit)
			} else {
				for t := p.next; bi.k < limit; bi.k++ {
					u := g.uniformPlain(t)
					if u < 0 || g.multiByteTarget(t) != u {
						break
					}
					t = u
				}
			}
		}
		// When the tests above cover little, the closure test may cover
		// all (it builds more transitions, so it comes second). A string
		// run is bounded (else k would be the limit): never closed.
		if !bi.exact && bi.k < limit && g.charsClosed(s) {
			bi = bulkInfo{k: limit, exact: true, n: 1 << 30}
		}
	}
	if g.bulk == nil {
		g.bulk = map[int32]bulkInfo{}
	}
	g.bulk[s] = bi
	return bi
}

// loopsOn reports whether walk state s steps to itself on every byte of
// set (ASCII). What is learnt is kept per state and per byte class, so a
// state's transitions are tried once each.
func (g *Grammar) loopsOn(s int32, set asciiSet) bool {
	yes := g.loopYes[s]
	if set.subsetOf(yes) {
		return true
	}
	no := g.loopNo[s]
	if set[0]&no[0] != 0 || set[1]&no[1] != 0 {
		return false
	}
	ok := true
	for w := range 2 {
		for rest := set[w] &^ yes[w]; rest != 0; rest &= rest - 1 {
			c := byte(w<<6 | bits.TrailingZeros64(rest))
			if yes[w]&(1<<(c&63)) != 0 {
				continue
			}
			k := g.clsASCII[g.cls[c]]
			if g.walkStep(s, c) == s {
				yes[0], yes[1] = yes[0]|k[0], yes[1]|k[1]
			} else {
				no[0], no[1] = no[0]|k[0], no[1]|k[1]
				ok = false
				break
			}
		}
		if !ok {
			break
		}
	}
	g.loopYes[s], g.loopNo[s] = yes, no
	return ok
}

// loopMinSubtree is the fewest nodes below a trie node for the walk to
// try the loop path there.
const loopMinSubtree = 8

// closureBudget bounds the states charsClosed explores.
const closureBudget = 24

// charsClosed reports whether every string of safe characters (see
// stringSafe) keeps s alive: the walk states reached from s by whole safe
// characters form a set (of at most closureBudget) in which every safe
// character leads from each member to a live member. Then every
// string-safe token is allowed from s, of any length, as in a plain run
// without bound. It catches what the common-successor tests of bulkFor
// miss: a pattern such as "a+" (unanchored) whose states before and after
// the match differ but all stay alive, and unions that are the same
// language spelt differently.
func (g *Grammar) charsClosed(s int32) bool {
	seen := map[int32]bool{s: true}
	queue := []int32{s}
	for len(queue) > 0 {
		u := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		ok := g.charTargets(u, func(t int32) bool {
			if !seen[t] {
				if len(seen) >= closureBudget {
					return false
				}
				seen[t] = true
				queue = append(queue, t)
			}
			return true
		})
		if !ok {
			return false
		}
	}
	return true
}

// charTargets calls visit with the walk state after each safe character
// from s (bytes of one class behave alike, so one byte per class and
// position is tried; targets may repeat). It reports false as soon as a
// character leads to the dead state or visit returns false.
func (g *Grammar) charTargets(s int32, visit func(int32) bool) bool {
	var seen [256]bool
	for c := 0x20; c < 0x7f; c++ {
		if !plainByte(byte(c)) || seen[g.cls[c]] {
			continue
		}
		seen[g.cls[c]] = true
		t := g.walkStep(s, byte(c))
		if t == 0 || !visit(t) {
			return false
		}
	}
	return g.multiByteTargets(s, visit)
}

// multiByteTargets calls visit with the walk state after each multi-byte
// UTF-8 character from s, one byte per class and position (leads of one
// class with the same continuation ranges behave alike; targets may
// repeat). It reports false as soon as a character leads to the dead state
// or visit returns false.
func (g *Grammar) multiByteTargets(s int32, visit func(int32) bool) bool {
	var walk func(st int32, left int, lo, hi byte) bool
	walk = func(st int32, left int, lo, hi byte) bool {
		var seen [256]bool
		for c := int(lo); c <= int(hi); c++ {
			k := g.cls[c]
			if seen[k] {
				continue
			}
			seen[k] = true
			u := g.walkStep(st, byte(c))
			if u == 0 {
				return false
			}
			if left == 1 {
				if !visit(u) {
					return false
				}
				continue
			}
			if !walk(u, left-1, 0x80, 0xBF) {
				return false
			}
		}
		return true
	}
	seenLead := map[[4]int]bool{}
	for lead := 0xC2; lead <= 0xF4; lead++ {
		n, lo2, hi2 := utf8Cont(byte(lead))
		key := [4]int{int(g.cls[lead]), n, int(lo2), int(hi2)}
		if seenLead[key] {
			continue
		}
		seenLead[key] = true
		u := g.walkStep(s, byte(lead))
		if u == 0 || !walk(u, n, lo2, hi2) {
			return false
		}
	}
	return true
}

// utf8Cont are the ranges of the continuation bytes of multi-byte UTF-8
// characters by lead byte (RFC 3629 §4: no overlongs, no surrogates).
func utf8Cont(lead byte) (n int, lo2, hi2 byte) {
	switch {
	case lead >= 0xC2 && lead <= 0xDF:
		return 1, 0x80, 0xBF
	case lead == 0xE0:
		return 2, 0xA0, 0xBF
	case lead == 0xED:
		return 2, 0x80, 0x9F
	case lead >= 0xE1 && lead <= 0xEF:
		return 2, 0x80, 0xBF
	case lead == 0xF0:
		return 3, 0x90, 0xBF
	case lead == 0xF4:
		return 3, 0x80, 0x8F
	case lead >= 0xF1 && lead <= 0xF3:
		return 3, 0x80, 0xBF
	}
	return 0, 0, 0
}

// multiByteTarget is the state every multi-byte UTF-8 character leads to
// from s, or -1 if they differ or die. Bytes of one class behave alike, so
// one byte per class and position is tried.
func (g *Grammar) multiByteTarget(s int32) int32 {
	if t := g.charsNext[s]; t != -2 {
		return t
	}
	target := int32(-2)
	ok := g.multiByteTargets(s, func(u int32) bool {
		if target == -2 {
			target = u
		}
		return u == target
	})
	if !ok || target < 0 {
		target = -1
	}
	g.charsNext[s] = target
	return target
}

// uniformPlain is the state every plainByte leads to from s, or -1.
func (g *Grammar) uniformPlain(s int32) int32 {
	if p := g.plainNext[s]; p != -2 {
		return p
	}
	t := int32(-2)
	for c := 0x20; c < 0x7f; c++ {
		if !plainByte(byte(c)) {
			continue
		}
		u := g.walkStep(s, byte(c))
		if t == -2 {
			t = u
		} else if u != t {
			t = -1
			break
		}
	}
	if t == 0 {
		t = -1
	}
	g.plainNext[s] = t
	return t
}

// Matcher tracks one generation against a Grammar. It is a state number
// and a flag, so Clone is a copy.
type Matcher struct {
	g     *Grammar
	state int32
	done  bool // EOS consumed
}

// NewMatcher starts a matcher at the beginning of the text.
func (g *Grammar) NewMatcher() *Matcher { return &Matcher{g: g, state: g.start} }

// Vocab is the vocabulary the grammar was compiled for.
func (g *Grammar) Vocab() *Vocab { return g.vocab }

// Clone copies the matcher; the copy shares the Grammar.
func (m *Matcher) Clone() *Matcher { c := *m; return &c }

// Reset returns to the beginning of the text.
func (m *Matcher) Reset() { m.state, m.done = m.g.start, false }

// Accepting reports whether the text so far is a complete match.
func (m *Matcher) Accepting() bool {
	if m.done {
		return true
	}
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	return m.g.accept[m.state]
}

// Done reports whether EOS has been consumed.
func (m *Matcher) Done() bool { return m.done }

// FillMask sets bit i of mask (word i/64, bit i%64) for each token i that
// may come next: a non-special token whose bytes keep the text a prefix of
// some accepted text, and the EOS tokens exactly when the text so far is
// accepted. After EOS only EOS is allowed. mask must hold at least
// (Vocab().Size()+63)/64 words; every other bit is cleared.
func (m *Matcher) FillMask(mask []uint64) error { return m.fillMask(mask, true) }

// fillMask is FillMask; memo says whether it may use and fill the
// Grammar's mask cache (tests compare both ways).
func (m *Matcher) fillMask(mask []uint64, memo bool) error {
	g, v := m.g, m.g.vocab
	if len(mask) < (len(v.tokens)+63)/64 {
		return fmt.Errorf("grammar: mask has %d words, vocabulary needs %d", len(mask), (len(v.tokens)+63)/64)
	}
	clear(mask)
	if m.done {
		setEOS(mask, v)
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	// The walk runs on walk states (widen.go): all the character
	// positions of a long-bounded string share one, and so its mask. The
	// main trie's tokens are walked from s, the long ones from sL; the
	// mask depends on the pair.
	s, sL := g.walkState(m.state), int32(0)
	if len(v.longTrie) > 1 {
		sL = g.longState(m.state)
	}
	key := uint64(uint32(s))<<32 | uint64(uint32(sL))
	// (Widening keeps nullability, so s accepts exactly when m.state does.)
	if memo && g.masks.load(key, mask) {
		return nil
	}
	// Bulk path (inside strings): when most plain ASCII bytes and every
	// multi-byte character lead from s to one state t1, and from t1 on
	// every safe character leads to one common live state for k-1 more
	// characters, every stringSafe token of at most k characters not
	// starting with an exceptional byte is allowed. Those are set from a
	// precomputed mask and their trie subtrees skipped; the rest of the
	// trie is walked as usual. In a string run, or a state whose safe
	// characters keep it within a small set of live states (charsClosed),
	// every string-safe token is allowed (exact).
	b := g.bulkFor(s)
	k, exc, exact := b.k, b.exc, b.exact
	if k > 0 {
		copy(mask, v.safeUpTo[k])
		for c := 0x20; c < 0x7f; c++ {
			if exc.has(byte(c)) {
				for _, id := range v.safeFirst[c] {
					mask[id>>6] &^= 1 << (id & 63)
				}
			}
		}
	}
	// Loop path: a node whose strict subtree holds only ASCII bytes
	// (Vocab.below) on each of which the node's state steps to itself has
	// every token below it allowed (each byte keeps the walk in that live
	// state), so they are set from the token list in pre-order without
	// stepping. This covers the runs of a class in a format or pattern
	// string ([A-Za-z0-9._%+-]+ in an e-mail address), where the bulk
	// paths, made for whole strings, do not apply. Small subtrees are
	// walked (the test costs about as much).
	below, belowSets := v.below, v.belowSets
	// The walk: stack[d] is the row (walk state × nclass) of wtrans after
	// the first d bytes of the current node's prefix. A node one deeper
	// than the last live node is its child, so its row is in cur, and the
	// common descent needs no load from the stack.
	trie, stack, trans, nc := v.trie, g.stack, g.wtrans, int32(g.nclass)
	cls := g.cls // a local copy: the loop's loads then need no pointer
	cur, curDepth := s*nc, uint16(0)
	stack[0] = cur
	states0 := len(g.states)
	walked := 0
	inExc := false // the current depth-1 ancestor's byte is exceptional
	for i := int32(1); i < int32(len(trie)); {
		n := &trie[i]
		d := n.depth
		if d == 1 {
			inExc = exc.has(n.b)
		}
		if !inExc && (int(n.safeChars) <= k || exact && n.safeChars != 255) {
			i = n.next
			continue
		}
		walked++
		ps := cur
		if d != curDepth+1 {
			ps = stack[d-1]
		}
		t := trans[ps+int32(cls[n.b])]
		if t < 0 {
			t = g.walkStep(ps/nc, n.b) * nc
			trans = g.wtrans
		}
		if t == 0 {
			i = n.next
			continue
		}
		stack[d] = t
		cur, curDepth = t, d
		if n.tok >= 0 {
			mask[n.tok>>6] |= 1 << (n.tok & 63)
			if n.dup > 0 {
				for _, id := range v.dups[n.dup-1] {
					mask[id>>6] |= 1 << (id & 63)
				}
			}
		}
		if n.next-i > loopMinSubtree && below[i] != 0 {
			if g.loopsOn(t/nc, belowSets[below[i]]) {
				for _, id := range v.preTokens[v.preStart[i+1]:v.preStart[n.next]] {
					mask[id>>6] |= 1 << (id & 63)
				}
				trans = g.wtrans
				i = n.next
				continue
			}
			trans = g.wtrans
		}
		i++
	}
	if sL != 0 {
		walked += g.walkLong(sL, mask)
	}
	if g.accept[s] {
		setEOS(mask, v)
	}
	if memo && g.err == nil && (walked >= memoMinWalk || len(g.states) > states0) {
		g.masks.store(key, mask)
	}
	return g.err
}

// walkLong sets the allowed tokens of the long trie from long walk state
// s and returns the number of nodes it stepped. The tokens are few (a few
// hundred, mostly runs of one byte), so only a plain string run is taken
// in bulk: there a string-safe token is allowed exactly when it has at
// most n characters.
func (g *Grammar) walkLong(s int32, mask []uint64) int {
	v := g.vocab
	run := -1
	if n, ok := g.b.stringRun(g.states[s]); ok {
		run = n
		for _, t := range v.longSafe {
			if t.chars <= n {
				mask[t.id>>6] |= 1 << (t.id & 63)
			}
		}
	}
	trie, stack, nc := v.longTrie, g.stack, int32(g.nclass)
	stack[0] = s * nc
	walked := 0
	for i := int32(1); i < int32(len(trie)); {
		n := &trie[i]
		if run >= 0 && n.safeChars != 255 {
			i = n.next
			continue
		}
		walked++
		ps := stack[n.depth-1]
		t := g.ltrans[ps+int32(g.cls[n.b])]
		if t < 0 {
			t = g.longStep(ps/nc, n.b) * nc
		}
		if t == 0 {
			i = n.next
			continue
		}
		stack[n.depth] = t
		if n.tok >= 0 {
			mask[n.tok>>6] |= 1 << (n.tok & 63)
			if n.dup > 0 {
				for _, id := range v.longDups[n.dup-1] {
					mask[id>>6] |= 1 << (id & 63)
				}
			}
		}
		i++
	}
	return walked
}

func setEOS(mask []uint64, v *Vocab) {
	for _, id := range v.eos {
		mask[id>>6] |= 1 << (id & 63)
	}
}

// Consume advances past token; it fails, leaving the matcher unchanged,
// when FillMask would not allow the token.
func (m *Matcher) Consume(token int32) error {
	g, v := m.g, m.g.vocab
	if m.done {
		return fmt.Errorf("grammar: token %d after EOS", token)
	}
	if token < 0 || int(token) >= len(v.tokens) {
		return fmt.Errorf("grammar: token %d out of range [0,%d)", token, len(v.tokens))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	if v.isEOS(token) {
		if !g.accept[m.state] {
			return fmt.Errorf("grammar: EOS (token %d) before the text is complete", token)
		}
		m.done = true
		return nil
	}
	bs := v.tokens[token]
	if v.special[token] || len(bs) == 0 {
		return fmt.Errorf("grammar: special token %d is not allowed in constrained text", token)
	}
	s := m.state
	for _, c := range bs {
		if s = g.step(s, c); s == 0 {
			if g.err != nil {
				return g.err
			}
			return fmt.Errorf("grammar: token %d (%q) is not allowed here", token, bs)
		}
	}
	m.state = s
	return nil
}

// ConsumeBytes advances past raw text (for tests and forced prefixes); it
// fails, leaving the matcher unchanged, if the text leaves the grammar.
func (m *Matcher) ConsumeBytes(text []byte) error {
	if m.done {
		return fmt.Errorf("grammar: text after EOS")
	}
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	s := m.state
	for i, c := range text {
		if s = g.step(s, c); s == 0 {
			return fmt.Errorf("grammar: byte %d (%q) of %q is not allowed", i, c, text)
		}
	}
	m.state = s
	return g.err
}
