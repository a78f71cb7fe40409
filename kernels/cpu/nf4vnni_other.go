//go:build !amd64 || purego

package cpu

// Without the assembly kernels there is no VNNI path (vnni is false).

func haveVNNI() bool { return false }

func dotNF4Int8VNNI(utbl *[32]uint8, packed []byte, absmax []float32, xv []byte, xd []float32) float32 {
	panic("unreachable")
}

func dotNF4Int8x8VNNI(out *[8]float32, utbl *[32]uint8, packed []byte, absmax []float32, xv []byte, xd8 []float32, cols int) {
	panic("unreachable")
}
