package quant

import (
	"math"
	"strconv"
	"strings"
)

// PyFloatRepr formats f as Python's repr(float) (and so json.dumps) does: the
// shortest digits that round-trip, in positional notation when the decimal
// exponent is in [-4, 16) ("0.0001", "100.0", "0.0569254569709301") and in
// scientific notation otherwise, with a signed exponent of at least two
// digits ("1e-05", "1.5e+16"). Non-finite values print as json.dumps writes
// them: NaN, Infinity, -Infinity.
func PyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	// Shortest round-trip digits: "-d.ddde±XX".
	s := strconv.FormatFloat(f, 'e', -1, 64)
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	if f == 0 {
		return sign + "0.0"
	}
	// Python's rule (float_repr_style 'short'): with the value written as
	// 0.DIGITS × 10^decpt, scientific iff decpt <= -4 or decpt > 16.
	decpt := exp + 1
	if decpt <= -4 || decpt > 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		e := strconv.Itoa(exp)
		if len(e) < 2 {
			e = "0" + e
		}
		return sign + m + "e" + es + e
	}
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	default:
		return sign + digits[:decpt] + "." + digits[decpt:]
	}
}
