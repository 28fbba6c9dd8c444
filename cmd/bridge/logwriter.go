package main

import (
	"io"
	"sync"
)

// maxPendingLog is how many bytes of log lines may wait for the writer before Write waits too.
const maxPendingLog = 1 << 20

// logWriter writes the log to w from a goroutine of its own, in one write for all the lines that came
// while the previous write was under way. An idle bridge has each line written at once; a busy one
// makes one write system call for many request lines instead of one each, and the logger's lock is held
// for a copy, not for a system call. Nothing waits on a timer, and Close writes what is left.
type logWriter struct {
	w       io.Writer
	mu      sync.Mutex
	written *sync.Cond // signalled after each write, for a Write waiting on a full buffer
	pending []byte
	wake    chan struct{}
	done    chan struct{}
	// closing is set by Close, which then writes what is left itself; closed, once it has, sends later
	// lines straight to w.
	closing, closed bool
	closeOnce       sync.Once
}

func newLogWriter(w io.Writer) *logWriter {
	l := &logWriter{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.written = sync.NewCond(&l.mu)
	go l.run()
	return l
}

// Write queues p, a whole line from the logger, and returns; it waits only while maxPendingLog bytes are
// already queued, so a stalled output slows the bridge rather than growing without bound.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.w.Write(p)
	}
	for len(l.pending) >= maxPendingLog && !l.closed {
		l.written.Wait()
	}
	if l.closed {
		return l.w.Write(p)
	}
	l.pending = append(l.pending, p...)
	if !l.closing {
		select {
		case l.wake <- struct{}{}:
		default: // a wake-up is already due
		}
	}
	return len(p), nil
}

func (l *logWriter) run() {
	defer close(l.done)
	var spare []byte
	for range l.wake {
		l.mu.Lock()
		out := l.pending
		l.pending = spare[:0]
		l.mu.Unlock()
		if len(out) > 0 {
			// An error here has nowhere better to go than the output that failed.
			_, _ = l.w.Write(out)
		}
		spare = out
		l.mu.Lock()
		l.written.Broadcast()
		l.mu.Unlock()
	}
}

// Close writes the lines still queued and makes later writes go straight to w, in order.
func (l *logWriter) Close() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closing = true
		close(l.wake)
		l.mu.Unlock()
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.pending) > 0 {
			_, _ = l.w.Write(l.pending)
		}
		l.pending, l.closed = nil, true
		l.written.Broadcast()
	})
}
