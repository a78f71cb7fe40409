package finetune

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws a one-line progress bar with ETA and tokens/s. On a
// terminal the line is redrawn in place; elsewhere (a log file, a pipe) a
// plain line is written at most every `every`.
type progress struct {
	w        io.Writer
	tty      bool
	total    int
	first    int // step the run started at (resumed runs)
	start    time.Time
	last     time.Time
	every    time.Duration
	tokens   int64
	lastLoss float64
	step     int // last step drawn
}

func newProgress(w io.Writer, first, total int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	now := time.Now()
	return &progress{w: w, tty: tty, total: total, first: first, start: now, every: 10 * time.Second}
}

// update records a finished step and redraws.
func (p *progress) update(step int, tokens int, loss float64) {
	if p.w == nil {
		return
	}
	p.tokens += int64(tokens)
	p.lastLoss = loss
	p.step = step
	now := time.Now()
	done := step == p.total
	if !p.tty && !done && now.Sub(p.last) < p.every && step != p.first+1 {
		return
	}
	p.last = now
	line := p.line(step, now)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		if done {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}

// printAbove writes text (whole lines) to out without tearing the bar: on a
// terminal the bar is cleared first and redrawn below the text.
func (p *progress) printAbove(out io.Writer, text string) {
	if p.w == nil || !p.tty || p.last.IsZero() {
		io.WriteString(out, text)
		return
	}
	fmt.Fprint(p.w, "\r\x1b[K")
	io.WriteString(out, text)
	if p.step < p.total {
		fmt.Fprintf(p.w, "%s", p.line(p.step, time.Now()))
	}
}

// line renders e.g. " 40%|████████            | 400/1000 [01:02<01:33, 6.41 it/s, 5123 tok/s, loss 1.234]".
func (p *progress) line(step int, now time.Time) string {
	const width = 24
	frac := float64(step) / float64(max(p.total, 1))
	filled := int(frac * width)
	elapsed := now.Sub(p.start)
	ran := step - p.first
	eta := "?"
	rate, tps := 0.0, 0.0
	if ran > 0 && elapsed > 0 {
		rate = float64(ran) / elapsed.Seconds()
		tps = float64(p.tokens) / elapsed.Seconds()
		eta = clock(time.Duration(float64(p.total-step) / rate * float64(time.Second)))
	}
	return fmt.Sprintf("%3.0f%%|%s%s| %d/%d [%s<%s, %s, %.0f tok/s, loss %.4f]",
		100*frac, strings.Repeat("█", filled), strings.Repeat(" ", width-filled), step, p.total,
		clock(elapsed), eta, speed(rate), tps, p.lastLoss)
}

// speed prints steps per second as tqdm does: it/s, or s/it when slow.
func speed(rate float64) string {
	switch {
	case rate <= 0:
		return "? it/s"
	case rate < 1:
		return fmt.Sprintf("%.2f s/it", 1/rate)
	}
	return fmt.Sprintf("%.2f it/s", rate)
}

// clock formats a duration as mm:ss or h:mm:ss.
func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}
