package testutil

import (
	"io"
	"sync"
	"testing"
)

// Output is t.Output() until t's cleanups run, and a sink after: a
// goroutine a test leaves behind (klog's global logger, client-go's
// certificate rotation) may still log, and the testing package panics on a
// write to a finished test's output.
func Output(t testing.TB) io.Writer {
	o := &output{w: t.Output()}
	t.Cleanup(func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.w = io.Discard
	})
	return o
}

type output struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Write(p)
}
