package grammar

// Walk states: the default string bound (and any maxLength at least as
// long as the longest token) is a counter inside the automaton, so each
// character position of a string is a new state, and the trie walk of
// each would build its own successors. But a mask only asks which
// strings of at most maxLen bytes (the longest token) are prefixes of
// the state's language, and that question cannot tell char{0,n} from
// char* when n ≥ maxLen: a prefix w that passes through a run of char*
// spends at most |w| ≤ n characters in it, and truncating that run to
// the characters w touched (or to ε, after w ends) gives a string of the
// bounded language with the same prefix. The argument holds in any
// context built from concatenation and union (not under intersection or
// complement, whose languages are not monotone in their operands).
//
// The same holds for any run X{0,n} whose X never matches ε (each
// repetition spends at least one byte of w), as the counters of formats
// are ([A-Za-z0-9-]{0,61} in an e-mail domain).
//
// So FillMask walks from the state's widened twin (its leading run with
// n ≥ the width replaced by X*), and so does every state the walk
// reaches: all positions of a long-bounded string share one walk state,
// one memoised mask and one set of successors. The width is not the
// longest token (128 bytes in Llama 3) but Vocab.split (32): the main
// trie holds the tokens of at most split bytes, and the few hundred
// longer ones (mostly runs of one byte) are walked apart, from states
// widened for the longest token, so a counter of 32 to 127 is widened
// too. Consume keeps the exact states, so the bound itself is enforced
// as before. This is llguidance's observation that a lexeme's length
// bound need not live in its automaton (guidance-ai/llguidance, docs on
// max_tokens and lexeme limits), done here on derivatives (Owens, Reppy
// and Turon 2009 §4.2 on similarity of states).

// widenDepth bounds the bytes of a partial character or escape the
// widening looks through before the run it widens (an escape \u00XX is
// six bytes, its first already consumed).
const widenDepth = 6

// widen returns x with the head string run widened as above, or x itself
// when there is none: x and the result have the same prefixes of at most
// min bytes.
func (b *builder) widen(x expr, min int) expr { return b.widenAt(x, min, widenDepth) }

// widenAt is widen looking through at most depth single bytes, memoised.
func (b *builder) widenAt(x expr, min, depth int) expr {
	key := uint64(uint32(x))<<32 | uint64(min)<<8 | uint64(depth)
	if w, ok := b.wide[key]; ok {
		return w
	}
	if b.wide == nil {
		b.wide = map[uint64]expr{}
	}
	w := b.widenNode(x, min, depth)
	b.wide[key] = w
	return w
}

func (b *builder) widenNode(x expr, min, depth int) expr {
	n := &b.nodes[x]
	switch n.kind {
	case kOr:
		var kids []expr
		for i, k := range n.kids {
			w := b.widenAt(k, min, depth)
			if w != k && kids == nil {
				kids = append(make([]expr, 0, len(n.kids)), n.kids[:i]...)
			}
			if kids != nil {
				kids = append(kids, w)
			}
		}
		if kids != nil {
			return b.or(kids...)
		}
	case kAnd:
		return b.widenAnd(x, min)
	case kRepeat:
		if b.isLongRun(x, min) {
			return b.repeat(n.a, 0, -1)
		}
	case kConcat:
		if b.isLongRun(n.a, min) {
			return b.cat(b.repeat(b.nodes[n.a].a, 0, -1), n.b)
		}
		if h := &b.nodes[n.a]; h.kind == kRepeat && h.min == 0 && h.max == 1 {
			// An optional head (X{0,n}Y)? · rest is (ε | X{0,n}Y) · rest:
			// its run is at the head too.
			if w := b.widenAt(h.a, min, depth); w != h.a {
				return b.cat(b.opt(w), n.b)
			}
			return x
		}
		if k := b.nodes[n.a].kind; k == kOr || k == kAnd {
			// A union at the head, as when the document's trailing
			// whitespace follows the value: widen its alternatives; an
			// intersection (a pattern or format under the length bound):
			// see widenAnd.
			if w := b.widenAt(n.a, min, depth); w != n.a {
				return b.cat(w, n.b)
			}
			return x
		}
		if b.nodes[n.a].kind == kBytes && depth > 0 {
			if w := b.widenAt(n.b, min, depth-1); w != n.b {
				return b.cat(n.a, w)
			}
		}
	}
	return x
}

// isLongRun reports whether x is X{0,n} with n ≥ min (finite), X a
// string character or any expression that never matches ε (so that a
// prefix of w bytes spends at most |w| repetitions: the argument above).
func (b *builder) isLongRun(x expr, min int) bool {
	n := &b.nodes[x]
	return n.kind == kRepeat && n.min == 0 && n.max >= 0 && int(n.max) >= min &&
		(n.a == b.strChar || !b.nodes[n.a].nullable)
}

// widenAnd widens the string run among the operands of an intersection,
// And(char{0,n}, P...) → And(char*, P...), where that is exact: the
// argument above needs, for a prefix w that ends inside the string, a
// completion of the string within the bound, and under P that completion
// may be long. So the widened expression's derivatives are explored (a
// bounded search) for D, the longest shortest distance from a live one
// to acceptance; w spends at most |w| ≤ maxLen characters, a shortest
// completion at most D more, so n ≥ maxLen + D makes the widening exact.
func (b *builder) widenAnd(x expr, min int) expr {
	n := &b.nodes[x]
	for i, k := range n.kids {
		bound, ok := b.runBound(k, widenDepth)
		if !ok || bound < min {
			continue
		}
		kids := append([]expr(nil), n.kids...)
		kids[i] = b.widenAt(k, min, widenDepth)
		w := b.and(kids...)
		if d := b.completionBound(w); d >= 0 && bound >= min+d {
			return w
		}
		return x
	}
	return x
}

// runBound is n when x is char{0,n} (finite) after at most depth single
// bytes (the rest of a character begun).
func (b *builder) runBound(x expr, depth int) (int, bool) {
	for {
		n := &b.nodes[x]
		switch {
		case n.kind == kRepeat && n.a == b.strChar && n.min == 0 && n.max >= 0:
			return int(n.max), true
		case n.kind == kConcat && b.nodes[n.a].kind == kBytes && depth > 0:
			x, depth = n.b, depth-1
		default:
			return 0, false
		}
	}
}

// completionBudget bounds the derivatives completionBound explores.
const completionBudget = 64

// completionBound is the longest, over the live derivatives of x, of the
// shortest continuation to acceptance (in bytes), or -1 when x has more
// than completionBudget derivatives. Memoised per expression.
func (b *builder) completionBound(x expr) int {
	if d, ok := b.completion[x]; ok {
		return d
	}
	if b.completion == nil {
		b.completion = map[expr]int{}
	}
	index := map[expr]int{x: 0}
	order := []expr{x}
	var edges [][]int // derivative i → its successors
	for i := 0; i < len(order); i++ {
		var out []int
		for _, c := range b.reps {
			d := b.derivative(order[i], c)
			if d == exprEmpty {
				continue
			}
			j, ok := index[d]
			if !ok {
				if len(order) >= completionBudget {
					b.completion[x] = -1
					return -1
				}
				j = len(order)
				index[d] = j
				order = append(order, d)
			}
			out = append(out, j)
		}
		edges = append(edges, out)
	}
	// Distances to acceptance by relaxation (the graph is small).
	const inf = 1 << 30
	dist := make([]int, len(order))
	for i, e := range order {
		dist[i] = inf
		if b.nodes[e].nullable {
			dist[i] = 0
		}
	}
	for changed := true; changed; {
		changed = false
		for i, out := range edges {
			for _, j := range out {
				if dist[j]+1 < dist[i] {
					dist[i], changed = dist[j]+1, true
				}
			}
		}
	}
	d := 0
	for _, v := range dist {
		if v < inf {
			d = max(d, v)
		}
	}
	b.completion[x] = d
	return d
}
