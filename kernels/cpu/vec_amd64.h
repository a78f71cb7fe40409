// Macros the AVX2 kernels of this package share (#include "vec_amd64.h").

// HSUM sets X0 to the sum of the 8 lanes of Y0: high half onto low, then
// two horizontal adds (every kernel that ends in one accumulator sums it
// this way). Clobbers X1.
#define HSUM \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS       X1, X0, X0; \
	VHADDPS      X0, X0, X0; \
	VHADDPS      X0, X0, X0

// ZERO8 zeroes the accumulators Y0-Y7 of the 8-token kernels.
#define ZERO8 \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3; \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y5, Y5, Y5; \
	VXORPS Y6, Y6, Y6; \
	VXORPS Y7, Y7, Y7

// ZERO12 zeroes the accumulators Y0-Y11 of the 12-sum kernels.
#define ZERO12 \
	ZERO8; \
	VXORPS Y8, Y8, Y8; \
	VXORPS Y9, Y9, Y9; \
	VXORPS Y10, Y10, Y10; \
	VXORPS Y11, Y11, Y11

// BCAST8 defines name as 8 copies of the 32-bit pattern bits (a vector).
#define BCAST8(name, bits) \
	DATA name+0(SB)/4, bits; \
	DATA name+4(SB)/4, bits; \
	DATA name+8(SB)/4, bits; \
	DATA name+12(SB)/4, bits; \
	DATA name+16(SB)/4, bits; \
	DATA name+20(SB)/4, bits; \
	DATA name+24(SB)/4, bits; \
	DATA name+28(SB)/4, bits; \
	GLOBL name(SB), RODATA|NOPTR, $32
