package config

import "testing"

func TestParseMemory(t *testing.T) {
	for _, c := range []struct {
		in    string
		bytes int64
		frac  float64
	}{
		{"1GiB", 1 << 30, 0}, {"512MiB", 512 << 20, 0}, {"2.5GB", 2500000000, 0}, {"1073741824", 1 << 30, 0},
		{"1g", 1 << 30, 0}, {" 64 KiB ", 64 << 10, 0}, {"0.5", 0, 0.5}, {"1.0", 0, 1}, {"40%", 0, 0.4}, {"100B", 100, 0},
	} {
		b, f, err := ParseMemory(c.in)
		if err != nil || b != c.bytes || f != c.frac {
			t.Errorf("ParseMemory(%q) = %d, %v, %v; want %d, %v", c.in, b, f, err, c.bytes, c.frac)
		}
	}
	for _, bad := range []string{"", "abc", "-1GiB", "0", "GiB", "150%", "NaN", "1e30TiB", "1.5.2G"} {
		if b, f, err := ParseMemory(bad); err == nil {
			t.Errorf("ParseMemory(%q) = %d, %v; want an error", bad, b, f)
		}
	}
}
