package kernels

import "fmt"

// MatrixSupporter is an optional Backend capability: a backend that
// implements it says which weight kinds its MatMul and Embed accept.
//
// MatMul and Embed cannot return errors, so callers check every weight once
// at load time with CheckMatrix; handing an op a weight that failed the check
// is a programming error (the op panics).
type MatrixSupporter interface {
	SupportsMatrix(w Matrix) bool
}

// CheckMatrix returns an error when w's buffers do not match its shape, or
// when backend b cannot run MatMul/Embed with w's kind. A backend that does
// not implement MatrixSupporter is assumed to accept exactly *F32Matrix and
// *NF4Matrix.
func CheckMatrix(b Backend, w Matrix) error {
	if w == nil {
		return fmt.Errorf("kernels: nil matrix")
	}
	switch m := w.(type) {
	case *F32Matrix:
		if m == nil {
			return fmt.Errorf("kernels: nil *F32Matrix")
		}
		if m.Rows <= 0 || m.Cols <= 0 {
			return fmt.Errorf("f32: bad shape [%d,%d]", m.Rows, m.Cols)
		}
		if len(m.Data) != m.Rows*m.Cols {
			return fmt.Errorf("f32: data has %d elements, want %d for [%d,%d]", len(m.Data), m.Rows*m.Cols, m.Rows, m.Cols)
		}
	case *NF4Matrix:
		if m == nil {
			return fmt.Errorf("kernels: nil *NF4Matrix")
		}
		if err := m.Validate(); err != nil {
			return err
		}
	case *BF16Matrix:
		if m == nil {
			return fmt.Errorf("kernels: nil *BF16Matrix")
		}
		if err := m.Validate(); err != nil {
			return err
		}
	case *Q8Matrix:
		if m == nil {
			return fmt.Errorf("kernels: nil *Q8Matrix")
		}
		if err := m.Validate(); err != nil {
			return err
		}
	}
	s, ok := b.(MatrixSupporter)
	_, f32 := w.(*F32Matrix)
	_, nf4 := w.(*NF4Matrix)
	if ok && !s.SupportsMatrix(w) || !ok && !f32 && !nf4 {
		return fmt.Errorf("kernels: backend %s does not support matrix type %T", b.Name(), w)
	}
	return nil
}

// MatrixBytes returns the memory that w's values take: the buffers of the
// kinds in this package, or what a backend's own kind reports through a
// Bytes() int method (kernels/cpu's NF4 panels, kernels/cuda's device
// matrices). ok is false for a kind it cannot size.
func MatrixBytes(w Matrix) (n int64, ok bool) {
	switch m := w.(type) {
	case *F32Matrix:
		return 4 * int64(len(m.Data)), true
	case *NF4Matrix:
		return int64(len(m.Packed)) + 4*int64(len(m.Absmax)), true
	case *BF16Matrix:
		return 2 * int64(len(m.Data)), true
	case *Q8Matrix:
		return int64(len(m.Q)) + 4*int64(len(m.Scale)), true
	case interface{ Bytes() int }:
		return int64(m.Bytes()), true
	}
	return 0, false
}

// HostRows is implemented by a backend's own weight kinds that live in host
// memory (kernels/cpu's panels): DecodeRow writes row r as float32 to dst
// [Cols], the values the weight was uploaded with.
type HostRows interface {
	Matrix
	DecodeRow(r int, dst []float32)
}
