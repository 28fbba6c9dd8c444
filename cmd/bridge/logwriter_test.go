package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowWriter records each write it is given, taking a while over each, as a pipe to a busy reader would.
type slowWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *slowWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Lines written from many goroutines all arrive, whole and each goroutine's in order, in fewer writes than
// lines; Close writes what is queued, and a line after Close goes straight through.
func TestLogWriter(t *testing.T) {
	out := &slowWriter{}
	l := newLogWriter(out)
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				line := fmt.Sprintf("g%d line %d\n", g, i)
				n, err := l.Write([]byte(line))
				assert.NoError(t, err)
				assert.Equal(t, len(line), n)
			}
		})
	}
	wg.Wait()
	l.Close()
	_, err := l.Write([]byte("after close\n"))
	require.NoError(t, err)

	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, got, writers*lines+1)
	require.Equal(t, "after close", got[len(got)-1])
	next := make([]int, writers)
	for _, line := range got[:len(got)-1] {
		var g, i int
		_, err := fmt.Sscanf(line, "g%d line %d", &g, &i)
		require.NoError(t, err, "a whole line: %q", line)
		require.Equal(t, next[g], i, "goroutine %d's lines in order", g)
		next[g]++
	}
	require.Less(t, out.writes, writers*lines/2, "lines that arrive during a write share the next one")
}

// A writer whose output stalls holds at most maxPendingLog bytes; the logger then waits instead of the
// queue growing.
func TestLogWriterBounded(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var written int
	blocked := writerFunc(func(p []byte) (int, error) {
		<-release
		mu.Lock()
		written += len(p)
		mu.Unlock()
		return len(p), nil
	})
	l := newLogWriter(blocked)
	line := []byte(strings.Repeat("x", 1023) + "\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 * maxPendingLog / len(line) {
			_, _ = l.Write(line)
		}
	}()
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.pending) >= maxPendingLog
	}, 5*time.Second, time.Millisecond)
	select {
	case <-done:
		t.Fatal("writes went on past the bound while the output was stalled")
	case <-time.After(50 * time.Millisecond):
	}
	l.mu.Lock()
	require.Less(t, len(l.pending), maxPendingLog+len(line))
	l.mu.Unlock()
	close(release)
	<-done
	l.Close()
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 3*maxPendingLog/len(line)*len(line), written)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
