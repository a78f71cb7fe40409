package cpu

import "time"

// sumJob sums data, split across the pool; items are elements.
type sumJob struct {
	data    []uint64
	partial []uint64 // [workers], each written once per chunk
}

func (j *sumJob) run(w, lo, hi int) {
	d := j.data[lo:hi]
	var s0, s1, s2, s3, s4, s5, s6, s7 uint64
	i := 0
	for ; i+8 <= len(d); i += 8 {
		s0 += d[i]
		s1 += d[i+1]
		s2 += d[i+2]
		s3 += d[i+3]
		s4 += d[i+4]
		s5 += d[i+5]
		s6 += d[i+6]
		s7 += d[i+7]
	}
	for ; i < len(d); i++ {
		s0 += d[i]
	}
	j.partial[w] += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
}

// streamRead reads data once on the pool and returns the bytes per second.
func streamRead(b *Backend, j *sumJob) float64 {
	start := time.Now()
	b.pool.parallel(j, len(j.data), 1<<18) // 2 MiB chunks
	return float64(len(j.data)*8) / time.Since(start).Seconds()
}

func newSumJob(b *Backend, bytes int) *sumJob {
	j := &sumJob{data: make([]uint64, bytes/8), partial: make([]uint64, b.pool.workers())}
	for i := range j.data {
		j.data[i] = uint64(i)
	}
	return j
}

// MeasureBandwidth streams a buffer of the given size through all of b's
// workers reps times and returns the best read rate in GB/s: the floor that
// memory-bound decode is measured against.
func MeasureBandwidth(b *Backend, bytes, reps int) float64 {
	j := newSumJob(b, bytes)
	best := 0.0
	for range max(reps, 1) {
		best = max(best, streamRead(b, j))
	}
	return best / 1e9
}
