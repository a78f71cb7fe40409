package grammar

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// intRange matches the decimal integers lo..hi as JSON writes them (no
// leading zeros, "-" for negatives, no "-0"), for |lo|, |hi| ≤ 10^18-1.
func intRange(b *builder, lo, hi int64) expr {
	if lo > hi {
		return exprEmpty
	}
	var alts []expr
	if lo < 0 {
		// Negative part: magnitudes max(1, -hi)..-lo.
		a := int64(1)
		if hi < 0 {
			a = -hi
		}
		alts = append(alts, b.cat(b.byte1('-'), uintRange(b, uint64(a), uint64(-lo))))
	}
	if hi >= 0 {
		alts = append(alts, uintRange(b, uint64(max(lo, 0)), uint64(hi)))
	}
	return b.or(alts...)
}

// uintRange matches lo..hi without leading zeros, split by digit count.
func uintRange(b *builder, lo, hi uint64) expr {
	var alts []expr
	ls, hs := strconv.FormatUint(lo, 10), strconv.FormatUint(hi, 10)
	for n := len(ls); n <= len(hs); n++ {
		a, z := ls, hs
		if n > len(ls) {
			a = "1" + strings.Repeat("0", n-1)
		}
		if n < len(hs) {
			z = strings.Repeat("9", n)
		}
		alts = append(alts, sameLenRange(b, a, z))
	}
	return b.or(alts...)
}

// sameLenRange matches the digit strings a..z, which have equal length.
func sameLenRange(b *builder, a, z string) expr {
	if a == "" {
		return exprEps
	}
	n := len(a)
	digits := func(k int) expr { return b.repeat(b.byteRange('0', '9'), k, k) }
	if strings.Trim(a[1:], "0") == "" && strings.Trim(z[1:], "9") == "" {
		return b.cat(b.byteRange(a[0], z[0]), digits(n-1))
	}
	if a[0] == z[0] {
		return b.cat(b.byte1(a[0]), sameLenRange(b, a[1:], z[1:]))
	}
	alts := []expr{b.cat(b.byte1(a[0]), sameLenRange(b, a[1:], strings.Repeat("9", n-1)))}
	if a[0]+1 <= z[0]-1 {
		alts = append(alts, b.cat(b.byteRange(a[0]+1, z[0]-1), digits(n-1)))
	}
	alts = append(alts, b.cat(b.byte1(z[0]), sameLenRange(b, strings.Repeat("0", n-1), z[1:])))
	return b.or(alts...)
}

// multipleOf matches the integers (optionally negative, at most
// maxIntDigits digits) divisible by k: the residue automaton of reading
// decimal digits (r → 10r+d mod k), unrolled over digit positions.
func multipleOf(b *builder, k int) expr {
	// at[pos][r]: the rest after pos digits with residue r.
	at := make([][]expr, maxIntDigits+1)
	for pos := maxIntDigits; pos >= 1; pos-- {
		at[pos] = make([]expr, k)
		for r := range k {
			var alts []expr
			if r == 0 {
				alts = append(alts, exprEps)
			}
			if pos < maxIntDigits {
				for d := 0; d < 10; d++ {
					alts = append(alts, b.cat(b.byte1(byte('0'+d)), at[pos+1][(10*r+d)%k]))
				}
			}
			at[pos][r] = b.or(alts...)
		}
	}
	alts := []expr{b.byte1('0')}
	for d := 1; d < 10; d++ {
		alts = append(alts, b.cat(b.byte1(byte('0'+d)), at[1][d%k]))
	}
	nonZero := b.or(alts[1:]...)
	return b.or(alts[0], nonZero, b.cat(b.byte1('-'), nonZero))
}

// maxFracDigits bounds the fraction digits of a number.
const maxFracDigits = 20

// decimalBound is a non-negative bound split as integer part and fraction
// digits (no trailing zeros): 12.05 → (12, "05").
type decimalBound struct {
	whole uint64
	frac  string
}

// numberRange matches JSON numbers in fixed notation (no exponent) between
// lo and hi (nil: unbounded), each inclusive unless its excl flag is set:
// the number is split into sign and magnitude, and each side's magnitude
// range is the intersection of a lower and an upper bound, compared digit
// by digit on the integer part and then the fraction.
func numberRange(b *builder, lo, hi *big.Rat, loExcl, hiExcl bool) (expr, error) {
	var alts []expr
	zero := new(big.Rat)
	// Non-negative numbers: magnitude in [max(lo,0), hi].
	if hi == nil || hi.Sign() > 0 || (hi.Sign() == 0 && !hiExcl) {
		var mlo *big.Rat
		ml := false
		if lo != nil && (lo.Sign() > 0 || (lo.Sign() == 0 && loExcl)) {
			mlo, ml = lo, loExcl
		}
		e, err := magnitudeRange(b, mlo, ml, hi, hiExcl)
		if err != nil {
			return exprEmpty, err
		}
		alts = append(alts, e)
	}
	// Negative numbers: magnitude in (max(-hi,0), -lo] (never zero: "-0" is left out).
	if lo == nil || lo.Sign() < 0 {
		var mlo *big.Rat = zero
		ml := true
		if hi != nil && hi.Sign() < 0 {
			mlo, ml = new(big.Rat).Neg(hi), hiExcl
		}
		var mhi *big.Rat
		if lo != nil {
			mhi = new(big.Rat).Neg(lo)
		}
		e, err := magnitudeRange(b, mlo, ml, mhi, loExcl)
		if err != nil {
			return exprEmpty, err
		}
		alts = append(alts, b.cat(b.byte1('-'), e))
	}
	return b.or(alts...), nil
}

func splitBound(r *big.Rat) (decimalBound, error) {
	s := r.FloatString(30)
	whole, frac, _ := strings.Cut(s, ".")
	frac = strings.TrimRight(frac, "0")
	check := new(big.Rat)
	if _, ok := check.SetString(whole + "." + frac + "0"); !ok || check.Cmp(r) != 0 {
		return decimalBound{}, fmt.Errorf("bound %s has no short decimal form", r.RatString())
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil || w > maxIntMagnitude {
		return decimalBound{}, fmt.Errorf("bound %s is beyond %d digits", r.RatString(), maxIntDigits)
	}
	return decimalBound{w, frac}, nil
}

func magnitudeRange(b *builder, lo *big.Rat, loExcl bool, hi *big.Rat, hiExcl bool) (expr, error) {
	digit := b.byteRange('0', '9')
	anyDigits := b.repeat(digit, 0, maxFracDigits)
	anyFrac := b.opt(b.seq(b.byte1('.'), b.repeat(digit, 1, maxFracDigits)))
	nonZeroFrac := b.seq(b.byte1('.'), b.repeat(b.byte1('0'), 0, maxFracDigits-1), b.byteRange('1', '9'), anyDigits)
	zeroFrac := b.opt(b.seq(b.byte1('.'), b.repeat(b.byte1('0'), 1, maxFracDigits)))
	parts := []expr{}
	if lo != nil && (lo.Sign() > 0 || loExcl) {
		d, err := splitBound(lo)
		if err != nil {
			return exprEmpty, err
		}
		var alts []expr
		if d.whole < maxIntMagnitude {
			alts = append(alts, b.cat(uintRange(b, d.whole+1, maxIntMagnitude), anyFrac))
		}
		var f expr
		switch {
		case d.frac == "" && !loExcl:
			f = anyFrac
		case d.frac == "":
			f = nonZeroFrac
		default:
			// Fraction ≥ (or >) d.frac, digit by digit.
			g := anyDigits // equal so far and f exhausted: ≥ holds
			if loExcl {
				g = b.seq(b.repeat(b.byte1('0'), 0, maxFracDigits-1), b.byteRange('1', '9'), anyDigits)
			}
			for i := len(d.frac) - 1; i >= 0; i-- {
				c := d.frac[i]
				var opts []expr
				if c < '9' {
					opts = append(opts, b.cat(b.byteRange(c+1, '9'), anyDigits))
				}
				opts = append(opts, b.cat(b.byte1(c), g))
				g = b.or(opts...)
			}
			f = b.cat(b.byte1('.'), g)
		}
		alts = append(alts, b.cat(b.lit(strconv.FormatUint(d.whole, 10)), f))
		parts = append(parts, b.or(alts...))
	}
	if hi != nil {
		d, err := splitBound(hi)
		if err != nil {
			return exprEmpty, err
		}
		var alts []expr
		if d.whole >= 1 {
			alts = append(alts, b.cat(uintRange(b, 0, d.whole-1), anyFrac))
		}
		var f expr
		switch {
		case d.frac == "" && !hiExcl:
			f = zeroFrac
		case d.frac == "":
			f = exprEmpty
		default:
			// Fraction ≤ (or <) d.frac: a smaller digit, or equal and go on;
			// stopping early is smaller (the rest of d.frac is not zero).
			g := b.repeat(b.byte1('0'), 0, maxFracDigits)
			if hiExcl {
				g = exprEmpty
			}
			for i := len(d.frac) - 1; i >= 0; i-- {
				c := d.frac[i]
				var opts []expr
				if c > '0' {
					opts = append(opts, b.cat(b.byteRange('0', c-1), anyDigits))
				}
				opts = append(opts, b.cat(b.byte1(c), g))
				if i > 0 {
					opts = append(opts, exprEps)
				}
				g = b.or(opts...)
			}
			f = b.opt(b.cat(b.byte1('.'), g))
		}
		alts = append(alts, b.cat(b.lit(strconv.FormatUint(d.whole, 10)), f))
		parts = append(parts, b.or(alts...))
	}
	if len(parts) == 0 {
		intPart := b.or(b.byte1('0'), b.cat(b.byteRange('1', '9'), b.repeat(digit, 0, maxIntDigits-1)))
		return b.cat(intPart, anyFrac), nil
	}
	return b.and(parts...), nil
}
