package main

import "testing"

func TestKVCacheBF16(t *testing.T) {
	for _, c := range []struct {
		flag, dtype string
		want        bool
	}{
		{"auto", "bfloat16", true}, {"auto", "float16", true}, {"auto", "float32", false}, {"auto", "", false},
		{"bfloat16", "float32", true}, {"float32", "bfloat16", false},
	} {
		if got := kvCacheBF16(c.flag, c.dtype); got != c.want {
			t.Errorf("--kv-cache-dtype %s on a %q model: bfloat16 %v, want %v", c.flag, c.dtype, got, c.want)
		}
	}
}
