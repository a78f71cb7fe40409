package grammar

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// expr is a node of the expression DAG: an extended regular expression over
// bytes (concatenation, union, intersection, complement, bounded repetition)
// plus references to named definitions, which make recursive schemas
// expressible. Nodes are hash-consed by their builder, so equal expressions
// share one id and a derivative state is identified by a single int32.
type expr int32

const (
	exprEmpty expr = 0 // ∅: matches nothing (the dead state)
	exprEps   expr = 1 // ε: matches the empty string
)

type kind uint8

const (
	kEmpty kind = iota
	kEps
	kBytes  // one byte from a set
	kConcat // a then b
	kOr     // any of kids
	kAnd    // all of kids
	kNot    // complement of a (over all byte strings)
	kRepeat // a repeated min..max times (max < 0: unbounded)
	kRef    // the definition numbered ref
)

type node struct {
	kind     kind
	nullable bool
	hasAnd   bool // an And or Not below: emptiness is not syntactic
	a, b     expr
	min, max int32
	set      byteSet
	kids     []expr
	ref      int32
	empty    int8 // memoized emptiness for hasAnd nodes: 0 unknown, 1 empty, 2 not empty
}

// byteSet is a set of bytes, one bit each.
type byteSet [4]uint64

func (s *byteSet) add(b byte) { s[b>>6] |= 1 << (b & 63) }
func (s *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s.add(byte(c))
	}
}
func (s byteSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }
func (s byteSet) isEmpty() bool   { return s == byteSet{} }
func (s byteSet) count() int {
	return bits.OnesCount64(s[0]) + bits.OnesCount64(s[1]) + bits.OnesCount64(s[2]) + bits.OnesCount64(s[3])
}

// nodeKey identifies a unary or binary node (ref numbers go in min).
type nodeKey struct {
	kind     kind
	a, b     expr
	min, max int32
}

// errTooLarge is returned when an expression or its derivative states exceed
// the builder's limits.
var errTooLarge = errors.New("grammar: automaton too large")

// builder owns the node table and the derivative memo. It is not safe for
// concurrent use; Grammar guards it with a mutex.
type builder struct {
	nodes   []node
	index   map[nodeKey]expr
	cats    map[uint64]expr // concatenations and repetitions by one word (see intern)
	sets    map[byteSet]expr
	nindex  map[uint64][]expr // n-ary Or/And by a hash of kind and sorted kid ids
	defs    []expr            // ref → body (exprEmpty until defined)
	defName []string
	deriv   map[uint64]expr // (expr, byte) → derivative
	cls     *[256]uint8     // byte classes (set by the Grammar before any derivative)
	reps    []byte          // one byte per class
	strChar expr            // one character inside a JSON string (0: none)
	// wide and completion memoise widenAt and completionBound (widen.go).
	wide       map[uint64]expr
	completion map[expr]int
	limit      int   // maximum number of nodes
	err        error // first limit error, sticky
	scratch    []expr
	dstack     []expr // derivative's stack of kid derivatives
}

func newBuilder(limit int) *builder {
	b := &builder{index: map[nodeKey]expr{}, sets: map[byteSet]expr{}, nindex: map[uint64][]expr{},
		deriv: make(map[uint64]expr, 1024), limit: limit}
	b.nodes = append(b.nodes, node{kind: kEmpty}, node{kind: kEps, nullable: true})
	return b
}

func (b *builder) intern(k nodeKey, n node) expr {
	// Concatenations and repetitions, the most frequent nodes of
	// derivatives, are keyed by one word (a map of uint64 hashes is much
	// faster than one of structs); repetitions whose bounds do not fit
	// 16 bits go to the general index.
	ck, packed := uint64(0), false
	switch {
	case k.kind == kConcat:
		ck, packed = uint64(uint32(k.a))<<32|uint64(uint32(k.b)), true
	case k.kind == kRepeat && k.min >= 0 && k.min < 1<<15 && k.max >= -1 && k.max < 1<<15:
		ck, packed = 1<<63|uint64(uint32(k.a))<<32|uint64(uint16(k.min))<<16|uint64(uint16(k.max)), true
	}
	if packed {
		if e, ok := b.cats[ck]; ok {
			return e
		}
		e := b.appendNode(n)
		if e != exprEmpty {
			if b.cats == nil {
				b.cats = map[uint64]expr{}
			}
			b.cats[ck] = e
		}
		return e
	}
	if e, ok := b.index[k]; ok {
		return e
	}
	e := b.appendNode(n)
	if e != exprEmpty {
		b.index[k] = e
	}
	return e
}

// appendNode adds n to the node table, or fails with errTooLarge.
func (b *builder) appendNode(n node) expr {
	if len(b.nodes) >= b.limit {
		if b.err == nil {
			b.err = errTooLarge
		}
		return exprEmpty
	}
	e := expr(len(b.nodes))
	b.nodes = append(b.nodes, n)
	return e
}

func (b *builder) bytes(s byteSet) expr {
	if s.isEmpty() {
		return exprEmpty
	}
	if e, ok := b.sets[s]; ok {
		return e
	}
	if len(b.nodes) >= b.limit {
		if b.err == nil {
			b.err = errTooLarge
		}
		return exprEmpty
	}
	e := expr(len(b.nodes))
	b.nodes = append(b.nodes, node{kind: kBytes, set: s})
	b.sets[s] = e
	return e
}

func (b *builder) byte1(c byte) expr {
	var s byteSet
	s.add(c)
	return b.bytes(s)
}

func (b *builder) byteRange(lo, hi byte) expr {
	var s byteSet
	s.addRange(lo, hi)
	return b.bytes(s)
}

// lit matches the bytes of s exactly.
func (b *builder) lit(s string) expr {
	e := exprEps
	for i := len(s) - 1; i >= 0; i-- {
		e = b.cat(b.byte1(s[i]), e)
	}
	return e
}

// cat is a then b, kept right-associated.
func (b *builder) cat(x, y expr) expr {
	if x == exprEmpty || y == exprEmpty {
		return exprEmpty
	}
	if x == exprEps {
		return y
	}
	if y == exprEps {
		return x
	}
	// Pointers, not copies: a node is large, and cat is the hottest
	// constructor of derivatives. Fields are read before any call that
	// may grow the table.
	nx := &b.nodes[x]
	if nx.kind == kConcat {
		head, rest := nx.a, nx.b
		return b.cat(head, b.cat(rest, y))
	}
	ck := uint64(uint32(x))<<32 | uint64(uint32(y)) // as intern keys it
	if e, ok := b.cats[ck]; ok {
		return e
	}
	ny := &b.nodes[y]
	return b.intern(nodeKey{kind: kConcat, a: x, b: y},
		node{kind: kConcat, a: x, b: y, nullable: nx.nullable && ny.nullable, hasAnd: nx.hasAnd || ny.hasAnd})
}

// seq concatenates its arguments.
func (b *builder) seq(xs ...expr) expr {
	e := exprEps
	for i := len(xs) - 1; i >= 0; i-- {
		e = b.cat(xs[i], e)
	}
	return e
}

// or is the union of xs: flattened, ∅ dropped, duplicates removed, sorted.
func (b *builder) or(xs ...expr) expr { return b.nary(kOr, xs) }

// and is the intersection of xs.
func (b *builder) and(xs ...expr) expr { return b.nary(kAnd, xs) }

func (b *builder) nary(k kind, xs []expr) expr {
	kids := b.scratch[:0]
	for _, x := range xs {
		n := &b.nodes[x]
		switch {
		case n.kind == k:
			kids = append(kids, n.kids...)
		case k == kOr && x == exprEmpty:
		case k == kAnd && x == exprEmpty:
			b.scratch = kids
			return exprEmpty
		case k == kAnd && n.kind == kNot && n.a == exprEmpty:
			// And with Σ* (Not ∅) is the other operands.
		default:
			kids = append(kids, x)
		}
	}
	slices.Sort(kids)
	kids = slices.Compact(kids)
	b.scratch = kids
	switch len(kids) {
	case 0:
		if k == kOr {
			return exprEmpty
		}
		return b.not(exprEmpty)
	case 1:
		return kids[0]
	}
	h := uint64(14695981039346656037) ^ uint64(k) // FNV-1a over the kind and kid ids
	for _, x := range kids {
		h = (h ^ uint64(uint32(x))) * 1099511628211
	}
	for _, e := range b.nindex[h] {
		if n := &b.nodes[e]; n.kind == k && slices.Equal(n.kids, kids) {
			return e
		}
	}
	if len(b.nodes) >= b.limit {
		if b.err == nil {
			b.err = errTooLarge
		}
		return exprEmpty
	}
	n := node{kind: k, kids: slices.Clone(kids), nullable: k == kAnd, hasAnd: k == kAnd}
	for _, x := range kids {
		if k == kOr {
			n.nullable = n.nullable || b.nodes[x].nullable
		} else {
			n.nullable = n.nullable && b.nodes[x].nullable
		}
		n.hasAnd = n.hasAnd || b.nodes[x].hasAnd
	}
	e := expr(len(b.nodes))
	b.nodes = append(b.nodes, n)
	b.nindex[h] = append(b.nindex[h], e)
	return e
}

// not is the complement of x over all byte strings.
func (b *builder) not(x expr) expr {
	if n := &b.nodes[x]; n.kind == kNot {
		return n.a
	}
	return b.intern(nodeKey{kind: kNot, a: x}, node{kind: kNot, a: x, nullable: !b.nodes[x].nullable, hasAnd: true})
}

// repeat is x{min,max}; max < 0 means unbounded.
func (b *builder) repeat(x expr, min, max int) expr {
	if max >= 0 && min > max {
		return exprEmpty
	}
	if max == 0 || x == exprEps {
		return exprEps
	}
	if x == exprEmpty {
		if min == 0 {
			return exprEps
		}
		return exprEmpty
	}
	if min == 1 && max == 1 {
		return x
	}
	nx := &b.nodes[x]
	return b.intern(nodeKey{kind: kRepeat, a: x, min: int32(min), max: int32(max)},
		node{kind: kRepeat, a: x, min: int32(min), max: int32(max), nullable: min == 0 || nx.nullable, hasAnd: nx.hasAnd})
}

func (b *builder) opt(x expr) expr { return b.repeat(x, 0, 1) }

// newRef allocates a definition to be filled by define; its reference may
// be used before that, which is how recursion is built.
func (b *builder) newRef(name string) (int32, expr) {
	r := int32(len(b.defs))
	b.defs = append(b.defs, exprEmpty)
	b.defName = append(b.defName, name)
	return r, b.intern(nodeKey{kind: kRef, min: r}, node{kind: kRef, ref: r})
}

func (b *builder) define(r int32, body expr) { b.defs[r] = body }

// derivative is the Brzozowski derivative of x by byte c: the expression
// matching {s : c·s ∈ L(x)}.
func (b *builder) derivative(x expr, c byte) expr {
	if x == exprEmpty || x == exprEps {
		return exprEmpty
	}
	n := &b.nodes[x]
	memo := n.kind == kOr || n.kind == kAnd || n.kind == kRef
	key := uint64(uint32(x))<<8 | uint64(b.cls[c])
	if memo {
		if d, ok := b.deriv[key]; ok {
			return d
		}
	}
	var d expr
	switch n.kind {
	case kBytes:
		d = exprEmpty
		if n.set.has(c) {
			d = exprEps
		}
	case kConcat:
		d = b.cat(b.derivative(n.a, c), n.b)
		if b.nodes[n.a].nullable {
			d = b.or(d, b.derivative(n.b, c))
		}
	case kOr, kAnd:
		// The kids' derivatives go on a stack shared by the recursion
		// (no allocation per node); it may grow during the calls, so it
		// is indexed afresh after each.
		k, base := n.kind, len(b.dstack)
		for _, kid := range n.kids {
			dk := b.derivative(kid, c)
			b.dstack = append(b.dstack, dk)
		}
		d = b.nary(k, b.dstack[base:])
		b.dstack = b.dstack[:base]
	case kNot:
		d = b.not(b.derivative(n.a, c))
	case kRepeat:
		max := int(n.max)
		if max > 0 {
			max--
		}
		d = b.cat(b.derivative(n.a, c), b.repeat(n.a, int(max32(n.min-1, 0)), max))
	case kRef:
		d = b.derivative(b.defs[n.ref], c)
	}
	if memo {
		b.deriv[key] = d
	}
	return d
}

func max32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

// isEmpty reports whether x matches no string. It is syntactic except below
// And/Not, where a bounded search over derivatives decides (budget states;
// when the budget runs out the node is taken as non-empty).
func (b *builder) isEmpty(x expr) bool {
	n := &b.nodes[x]
	switch n.kind {
	case kEmpty:
		return true
	case kEps, kBytes, kRef:
		return false
	case kConcat:
		return b.isEmpty(n.a) || b.isEmpty(n.b)
	case kOr:
		for _, k := range n.kids {
			if !b.isEmpty(k) {
				return false
			}
		}
		return true
	case kRepeat:
		return n.min > 0 && b.isEmpty(n.a)
	}
	// And / Not.
	if n.empty != 0 {
		return n.empty == 1
	}
	if n.nullable {
		b.nodes[x].empty = 2
		return false
	}
	seen := map[expr]bool{x: true}
	live := b.searchLive(x, seen, 500)
	if live {
		b.nodes[x].empty = 2
	} else {
		b.nodes[x].empty = 1
	}
	return !live
}

// searchOrder tries the bytes that end JSON values and strings first, so
// the search for a reachable accepting state is usually short.
var searchOrder = func() []byte {
	first := []byte("\"}],0123456789aeltrunfsx -.:{[")
	var seen byteSet
	out := make([]byte, 0, 256)
	for _, c := range first {
		seen.add(c)
		out = append(out, c)
	}
	for c := 0; c < 256; c++ {
		if !seen.has(byte(c)) {
			out = append(out, byte(c))
		}
	}
	return out
}()

func (b *builder) searchLive(x expr, seen map[expr]bool, budget int) bool {
	stack := []expr{x}
	for len(stack) > 0 && len(seen) < budget {
		y := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for i := len(b.reps) - 1; i >= 0; i-- {
			d := b.derivative(y, b.reps[i])
			if d == exprEmpty || seen[d] {
				continue
			}
			if b.nodes[d].nullable {
				return true
			}
			if !b.nodes[d].hasAnd {
				if !b.isEmpty(d) {
					return true
				}
				continue
			}
			if e := b.nodes[d].empty; e != 0 {
				if e == 2 {
					return true
				}
				continue
			}
			seen[d] = true
			stack = append(stack, d)
		}
	}
	return len(stack) > 0 // budget exhausted: assume live
}

// checkGuarded refuses definitions that can reach themselves without
// consuming a byte (left recursion), on which derivatives would not end.
func (b *builder) checkGuarded() error {
	state := make([]int8, len(b.defs)) // 0 new, 1 on stack, 2 done
	var visit func(r int32) error
	var heads func(x expr, out *[]int32)
	var seen map[expr]bool
	heads = func(x expr, out *[]int32) {
		if seen[x] {
			return
		}
		seen[x] = true
		n := &b.nodes[x]
		switch n.kind {
		case kRef:
			*out = append(*out, n.ref)
		case kConcat:
			heads(n.a, out)
			if b.nodes[n.a].nullable {
				heads(n.b, out)
			}
		case kOr, kAnd:
			for _, k := range n.kids {
				heads(k, out)
			}
		case kNot, kRepeat:
			heads(n.a, out)
		}
	}
	visit = func(r int32) error {
		switch state[r] {
		case 1:
			return fmt.Errorf("grammar: $ref %q refers to itself without consuming input", b.defName[r])
		case 2:
			return nil
		}
		state[r] = 1
		var hs []int32
		seen = map[expr]bool{}
		heads(b.defs[r], &hs)
		for _, h := range hs {
			if err := visit(h); err != nil {
				return err
			}
		}
		state[r] = 2
		return nil
	}
	for r := range b.defs {
		if err := visit(int32(r)); err != nil {
			return err
		}
	}
	return nil
}

// stringRun recognises x = char{m,n} · rest, where char is the JSON string
// character and rest can only start with '"': then every run of at most n
// string-safe characters keeps x alive (n < 0: unbounded, reported as a
// large n).
// A union of such runs (as in several properties' names, or a string
// value followed by the document's trailing whitespace) is a run of the
// longest of them.
func (b *builder) stringRun(x expr) (int, bool) {
	if b.strChar == 0 {
		return 0, false
	}
	n := b.nodes[x]
	if n.kind == kOr {
		most := -1
		for _, k := range n.kids {
			m, ok := b.stringRun(k)
			if !ok {
				return 0, false
			}
			most = max(most, m)
		}
		return most, true
	}
	if n.kind != kConcat {
		return 0, false
	}
	if b.nodes[n.a].kind == kOr {
		return b.stringRun(n.a)
	}
	head := b.nodes[n.a]
	if head.kind != kRepeat || head.a != b.strChar {
		return 0, false
	}
	first, ok := b.firstBytes(n.b, 8)
	var quote byteSet
	quote.add('"')
	if !ok || first != quote {
		return 0, false
	}
	if head.max < 0 {
		return 1 << 30, true
	}
	return int(head.max), true
}

// firstBytes is the set of bytes that can start a string of x, when x is
// not nullable and the set is found within depth levels.
func (b *builder) firstBytes(x expr, depth int) (byteSet, bool) {
	n := &b.nodes[x]
	if depth == 0 || n.nullable {
		return byteSet{}, false
	}
	switch n.kind {
	case kBytes:
		return n.set, true
	case kConcat:
		return b.firstBytes(n.a, depth-1)
	case kOr:
		var out byteSet
		for _, k := range n.kids {
			s, ok := b.firstBytes(k, depth-1)
			if !ok {
				return byteSet{}, false
			}
			for i := range out {
				out[i] |= s[i]
			}
		}
		return out, true
	case kRepeat:
		return b.firstBytes(n.a, depth-1)
	}
	return byteSet{}, false
}
