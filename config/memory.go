package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// memoryUnits are the suffixes ParseMemory accepts, binary and decimal.
var memoryUnits = []struct {
	suffix string
	bytes  float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// ParseMemory reads a memory size: bytes with an optional unit ("512MiB",
// "1GiB", "2.5GB", "1073741824"), or a fraction of the available memory
// ("0.5", "50%"). It returns either bytes or fraction, the other zero.
func ParseMemory(s string) (bytes int64, fraction float64, err error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, 0, fmt.Errorf("empty memory size")
	}
	if p, ok := strings.CutSuffix(t, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(f > 0 && f <= 100) {
			return 0, 0, fmt.Errorf("%q: a percentage must be in (0, 100]", s)
		}
		return 0, f / 100, nil
	}
	unit := 0.0
	for _, u := range memoryUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, unit = strings.TrimSpace(num), u.bytes
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		return 0, 0, fmt.Errorf("%q is not a memory size (bytes with a unit such as 512MiB or 1GiB, or a fraction such as 0.5)", s)
	}
	if unit == 0 && f <= 1 && strings.Contains(t, ".") || unit == 0 && f < 1 {
		return 0, f, nil // a fraction
	}
	if unit == 0 {
		unit = 1
	}
	b := f * unit
	if b >= math.MaxInt64 {
		return 0, 0, fmt.Errorf("%q is too large", s)
	}
	return int64(b), 0, nil
}
