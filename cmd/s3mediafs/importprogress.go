package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
)

// progress shows an import's progress: a bar with rate and ETA on a
// terminal, a plain line every 10 s otherwise.
type progress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	total int64
	files int
	done_ atomic.Int64
	count atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
	start time.Time
}

func newProgress(o importOptions, total int64, files int) *progress {
	p := &progress{w: o.progress, total: total, files: files, stop: make(chan struct{}), start: time.Now()}
	if o.tty {
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(o.progress),
			progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetDescription("uploading"), progressbar.OptionThrottle(200*time.Millisecond))
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.line()
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) {
	p.done_.Add(n)
	p.count.Add(1)
	if p.bar != nil {
		p.bar.Add64(n)
	}
}

func (p *progress) line() {
	done := p.done_.Load()
	rate := float64(done) / time.Since(p.start).Seconds()
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "uploaded %d/%d files, %s of %s, %s/s, ETA %s\n", p.count.Load(), p.files,
		humanize.IBytes(uint64(done)), humanize.IBytes(uint64(p.total)), humanize.IBytes(uint64(rate)), eta)
}

func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.line()
}
