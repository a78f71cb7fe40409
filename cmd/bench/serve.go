package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a serve process the benchmark started.
type server struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been waited for
	err    error         // its exit status, once exited is closed

	stopSampling chan struct{}
	sampled      chan struct{} // closed when the sampler has stopped
	mu           sync.Mutex
	mem          memory
}

// memory is what the sampler saw of the child's /proc/PID/status.
type memory struct {
	PeakRSSMiB  float64 `json:"peak_rss_mib"`  // largest VmRSS sampled (every 100 ms)
	VmHWMMiB    float64 `json:"vm_hwm_mib"`    // the kernel's own peak RSS, last read
	ReadyRSSMiB float64 `json:"ready_rss_mib"` // VmRSS when /health first answered 200
	Samples     int     `json:"samples"`
}

// freePort asks the kernel for a free TCP port on the loopback interface.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts bin with args, its output going to logs, and samples
// its memory every 100 ms until stop.
func startServer(bin string, args []string, logs io.Writer) (*server, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", bin, err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{}), stopSampling: make(chan struct{}), sampled: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	go s.sample()
	return s, nil
}

func (s *server) sample() {
	defer close(s.sampled)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.readMemory()
		select {
		case <-tick.C:
		case <-s.stopSampling:
			return
		case <-s.exited:
			return
		}
	}
}

// readMemory records one sample of VmRSS and VmHWM.
func (s *server) readMemory() {
	rss, hwm, err := procMemory(s.cmd.Process.Pid)
	if err != nil {
		return // not Linux, or the process is gone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem.PeakRSSMiB = max(s.mem.PeakRSSMiB, rss)
	s.mem.VmHWMMiB = max(s.mem.VmHWMMiB, hwm)
	s.mem.Samples++
}

// procMemory reads VmRSS and VmHWM, in MiB, from /proc/PID/status.
func procMemory(pid int) (rss, hwm float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		// "VmRSS:	  123456 kB"
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %q", pid, sc.Text())
		}
		if key == "VmRSS" {
			rss = kb / 1024
		} else {
			hwm = kb / 1024
		}
		found++
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no VmRSS/VmHWM", pid)
	}
	return rss, hwm, sc.Err()
}

// waitHealthy polls GET base/health until it answers 200 (serve answers
// 503 while the model loads), the process exits, or timeout passes.
func (s *server) waitHealthy(ctx context.Context, base string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if rss, _, err := procMemory(s.cmd.Process.Pid); err == nil {
					s.mu.Lock()
					s.mem.ReadyRSSMiB = rss
					s.mu.Unlock()
				}
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("serve exited before it was healthy: %v", s.err)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("serve not healthy at %s/health after %v", base, timeout)
			}
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM (serve drains, then exits), kills the process if it
// has not exited after grace, and returns its memory figures and how it
// ended.
func (s *server) stop(grace time.Duration) (memory, string) {
	s.readMemory() // a last sample, while the process still runs
	close(s.stopSampling)
	<-s.sampled
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(grace):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	status := "exit status 0"
	if s.err != nil {
		status = s.err.Error()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem, status
}
