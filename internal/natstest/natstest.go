// Package natstest is what tests need of NATS: a real nats-server with JetStream in the test's process,
// the messages of a stream read back, and a log sink to read while the code under test writes.
package natstest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// Start runs a nats-server with JetStream on a random loopback port, its store in a temporary directory,
// until the test ends. mods change those options first (a payload limit, a password, sync always).
func Start(t testing.TB, mods ...func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true}
	for _, m := range mods {
		m(opts)
	}
	return Run(t, opts)
}

// Run runs a nats-server with opts as they are, until the test ends; a test that stops and starts NATS
// again keeps its options, to come back on the same port with the same store.
func Run(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second), "nats-server did not start")
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// Stored returns every message of the stream, in order (deleted ones left out); none when the stream does
// not exist.
func Stored(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	str, err := js.Stream(ctx, stream)
	for passing(err) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		str, err = js.Stream(ctx, stream)
	}
	if err != nil {
		require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
		return nil
	}
	info, err := str.Info(ctx)
	for passing(err) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		info, err = str.Info(ctx)
	}
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := str.GetMsg(ctx, seq)
		for passing(err) && ctx.Err() == nil {
			// A cluster electing a leader after a node was killed answers "temporarily unavailable".
			time.Sleep(100 * time.Millisecond)
			m, err = str.GetMsg(ctx, seq)
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

// passing says whether err is JetStream's word that it cannot answer for now (503), or no answer in time.
func passing(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 503 || errors.Is(err, nats.ErrTimeout)
}

// StoredAt is Stored for the NATS server at url, through a connection of its own.
func StoredAt(t testing.TB, url, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return Stored(t, js, stream)
}

// IDs counts the messages by their Nats-Msg-Id: an id counted twice was stored twice.
func IDs(msgs []*jetstream.RawStreamMsg) map[string]int {
	ids := map[string]int{}
	for _, m := range msgs {
		ids[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	return ids
}

// LogBuffer is a log sink that tests read while the code under test writes to it.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it is safe to call while others read.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is what has been written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Contains reports whether what has been written so far contains sub.
func (l *LogBuffer) Contains(sub string) bool { return strings.Contains(l.String(), sub) }
