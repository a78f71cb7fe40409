//go:build !amd64 || purego

package cpu

// Without the assembly kernels there are no panels (vnni is false, so
// Upload never repacks).

func panelNF4x12Asm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, absmax *float32, nb int, utbl *[32]uint8) {
	panic("unreachable")
}

func panelNF4x8Asm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, absmax *float32, nb int, utbl *[32]uint8) {
	panic("unreachable")
}

func panelNF4x4Asm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, absmax *float32, nb int, utbl *[32]uint8) {
	panic("unreachable")
}

func panelNF4x1Asm(y *float32, ldy int, x *byte, d *float32, bias *int32, panel *byte, absmax *float32, nb int, utbl *[32]uint8) {
	panic("unreachable")
}

func bf16PanelX12Asm(y *float32, ldy int, x *float32, xstride int, panel *uint16, cols int) {
	panic("unreachable")
}

func bf16PanelX8Asm(y *float32, ldy int, x *float32, xstride int, panel *uint16, cols int) {
	panic("unreachable")
}

func bf16PanelX4Asm(y *float32, ldy int, x *float32, xstride int, panel *uint16, cols int) {
	panic("unreachable")
}

func bf16PanelX1Asm(y *float32, ldy int, x *float32, xstride int, panel *uint16, cols int) {
	panic("unreachable")
}
