package finetune

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// memoryInfo is the process's resident memory: the CPU analogue of the lab's
// torch.cuda.max_memory_reserved.
type memoryInfo struct {
	RSS, PeakRSS int64 // bytes (VmRSS, VmHWM)
	Total        int64 // the machine's memory (MemTotal); 0 if unknown
}

// readMemory reads /proc on Linux; elsewhere it falls back to the Go
// runtime's view of the heap.
func readMemory() memoryInfo {
	var mi memoryInfo
	if v := procField("/proc/self/status", "VmRSS:"); v > 0 {
		mi.RSS = v
		mi.PeakRSS = procField("/proc/self/status", "VmHWM:")
	} else {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mi.RSS, mi.PeakRSS = int64(ms.Sys), int64(ms.Sys)
	}
	mi.Total = procField("/proc/meminfo", "MemTotal:")
	return mi
}

// procField reads a "Name:   123 kB" line of a /proc file, in bytes (0 if absent).
func procField(path, name string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		fields := strings.Fields(line[len(name):])
		if len(fields) == 0 {
			return 0
		}
		v, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0
		}
		if len(fields) > 1 && strings.EqualFold(fields[1], "kB") {
			v *= 1024
		}
		return v
	}
	return 0
}

func gb(b int64) float64 { return float64(b) / (1 << 30) }

// size prints bytes in GB, or MB below a gigabyte.
func size(b int64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.3f GB", gb(b))
	}
	return fmt.Sprintf("%.1f MB", float64(b)/(1<<20))
}
