package train

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Training state file: everything a resumed run needs to continue bit for
// bit — the step count, the LoRA weights and both optimizer states of every
// tensor. The randomness (dropout) is a pure function of Seed and the step
// count (see rand.go), so it needs no state of its own; Seed, rank, alpha
// and optimizer are recorded and must match on load.
//
// Layout, little-endian:
//
//	magic "parrot-lora-state\x00", version uint32 (1)
//	step int64, seed uint64, rank int64, alpha float64, optim string, modules int64
//	per module: name string, in, out int64, A [rank*in]f32, B [out*rank]f32, state(A), state(B)
//	state: eightBit uint8; 32-bit: m, v [n]f32; 8-bit: c1, c2 [n]u8, abs1, abs2 [ceil(n/256)]f32
//
// Strings are an int64 length then the bytes.

const (
	stateMagic   = "parrot-lora-state\x00"
	stateVersion = 1
)

// SaveState writes the training state to w.
func (t *Trainer) SaveState(w io.Writer) error {
	bw := bufio.NewWriter(w)
	e := &stateEncoder{w: bw}
	e.bytes([]byte(stateMagic))
	e.put(uint32(stateVersion))
	e.put(int64(t.step))
	e.put(t.opts.Seed)
	e.put(int64(t.opts.Rank))
	e.put(t.opts.Alpha)
	e.str(t.opts.Optim)
	e.put(int64(len(t.modules)))
	for _, m := range t.modules {
		e.str(m.name)
		e.put(int64(m.in))
		e.put(int64(m.out))
		e.put(m.a)
		e.put(m.b)
		e.state(&m.sa)
		e.state(&m.sb)
	}
	if e.err != nil {
		return fmt.Errorf("train: saving state: %w", e.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("train: saving state: %w", err)
	}
	return nil
}

type stateEncoder struct {
	w   io.Writer
	err error
}

func (e *stateEncoder) put(v any) {
	if e.err == nil {
		e.err = binary.Write(e.w, binary.LittleEndian, v)
	}
}

func (e *stateEncoder) bytes(b []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

func (e *stateEncoder) str(s string) {
	e.put(int64(len(s)))
	e.bytes([]byte(s))
}

func (e *stateEncoder) state(s *paramState) {
	if s.eightBit {
		e.put(uint8(1))
		e.put(s.c1)
		e.put(s.c2)
		e.put(s.abs1)
		e.put(s.abs2)
		return
	}
	e.put(uint8(0))
	e.put(s.m)
	e.put(s.v)
}

// LoadState restores a state written by SaveState into a trainer built
// with the same model, targets, rank, alpha, optimizer and seed. On error
// the trainer is unchanged.
func (t *Trainer) LoadState(r io.Reader) error {
	d := &stateDecoder{r: bufio.NewReader(r)}
	if err := t.loadState(d); err != nil {
		return fmt.Errorf("train: loading state: %w", err)
	}
	return nil
}

// loadedModule is one module as read, committed only when all are valid.
type loadedModule struct {
	a, b   []float32
	sa, sb paramState
}

func (t *Trainer) loadState(d *stateDecoder) error {
	magic := make([]byte, len(stateMagic))
	if d.read(magic); d.err != nil || string(magic) != stateMagic {
		return errors.New("not a training state file")
	}
	var version uint32
	if d.read(&version); d.err == nil && version != stateVersion {
		return fmt.Errorf("state version %d, want %d", version, stateVersion)
	}
	var step, rank, n int64
	var seed uint64
	var alpha float64
	d.read(&step)
	d.read(&seed)
	d.read(&rank)
	d.read(&alpha)
	optim := d.str(64)
	d.read(&n)
	if d.err != nil {
		return d.err
	}
	switch {
	case step < 0:
		return fmt.Errorf("negative step count %d", step)
	case seed != t.opts.Seed:
		return fmt.Errorf("state was trained with seed %d, this run has %d", seed, t.opts.Seed)
	case int(rank) != t.opts.Rank || alpha != t.opts.Alpha:
		return fmt.Errorf("state has r=%d alpha=%v, this run r=%d alpha=%v", rank, alpha, t.opts.Rank, t.opts.Alpha)
	case optim != t.opts.Optim:
		return fmt.Errorf("state was trained with %s, this run uses %s", optim, t.opts.Optim)
	case int(n) != len(t.modules):
		return fmt.Errorf("state has %d LoRA modules, this run %d", n, len(t.modules))
	}
	loaded := make([]loadedModule, len(t.modules))
	for i, m := range t.modules {
		name := d.str(1 << 10)
		var in, out int64
		d.read(&in)
		d.read(&out)
		if d.err != nil {
			return d.err
		}
		if name != m.name || int(in) != m.in || int(out) != m.out {
			return fmt.Errorf("module %d is %s [%d→%d], this run has %s [%d→%d]", i, name, in, out, m.name, m.in, m.out)
		}
		l := &loaded[i]
		l.a, l.b = make([]float32, len(m.a)), make([]float32, len(m.b))
		d.read(l.a)
		d.read(l.b)
		l.sa, l.sb = newParamState(len(m.a), t.opts), newParamState(len(m.b), t.opts)
		if err := d.state(&l.sa); err != nil {
			return fmt.Errorf("%s lora_A: %w", m.name, err)
		}
		if err := d.state(&l.sb); err != nil {
			return fmt.Errorf("%s lora_B: %w", m.name, err)
		}
	}
	if d.err != nil {
		return d.err
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		return errors.New("trailing data after the last module")
	}
	for i, m := range t.modules {
		l := &loaded[i]
		m.a, m.b, m.sa, m.sb = l.a, l.b, l.sa, l.sb
	}
	t.writeParams()
	t.step = int(step)
	return nil
}

type stateDecoder struct {
	r   *bufio.Reader
	err error
}

func (d *stateDecoder) read(v any) {
	if d.err == nil {
		if d.err = binary.Read(d.r, binary.LittleEndian, v); errors.Is(d.err, io.EOF) {
			d.err = io.ErrUnexpectedEOF
		}
	}
}

func (d *stateDecoder) str(maxLen int64) string {
	var n int64
	d.read(&n)
	if d.err != nil {
		return ""
	}
	if n < 0 || n > maxLen {
		d.err = fmt.Errorf("bad string length %d", n)
		return ""
	}
	b := make([]byte, n)
	d.read(b)
	return string(b)
}

// state reads into s, which New built for this tensor: its kind (8-bit or
// not) must be the one recorded.
func (d *stateDecoder) state(s *paramState) error {
	var eight uint8
	d.read(&eight)
	if d.err != nil {
		return d.err
	}
	if (eight == 1) != s.eightBit || eight > 1 {
		return fmt.Errorf("optimizer state kind %d does not match this run (8-bit: %v)", eight, s.eightBit)
	}
	if s.eightBit {
		d.read(s.c1)
		d.read(s.c2)
		d.read(s.abs1)
		d.read(s.abs2)
	} else {
		d.read(s.m)
		d.read(s.v)
	}
	if d.err == nil {
		for _, v := range [][]float32{s.m, s.v, s.abs1, s.abs2} {
			for _, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return errors.New("non-finite optimizer state")
				}
			}
		}
	}
	return d.err
}
