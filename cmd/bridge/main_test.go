package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/bridge"
)

// logSink collects the JSON log lines run writes, so a test can wait for one.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// field returns the value of key in the first log record with message msg.
func (s *logSink) field(msg, key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			v, _ := rec[key].(string)
			return v
		}
	}
	return ""
}

// TestRun starts the real entry point with no NATS settings (so an embedded server), posts a seed
// payload, reads it back from NATS, and shuts down.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BRIDGE_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("BRIDGE_EMBEDDED_NATS_ADDR", "127.0.0.1:0")
	t.Setenv("BRIDGE_EMBEDDED_NATS_DIR", filepath.Join(dir, "nats"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &logSink{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, logs, io.Discard) }()

	var addr, natsURL string
	require.Eventually(t, func() bool {
		addr, natsURL = logs.field("bridge listening", "addr"), logs.field("embedded NATS server started", "url")
		return addr != "" && natsURL != ""
	}, 10*time.Second, 10*time.Millisecond)

	// A second client, as another process would, over TCP.
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	sub, err := nc.SubscribeSync("acr.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	resp, err := http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	body, err := os.ReadFile(filepath.Join("..", "..", "bridge", "testdata", "in", "webhook-push.json"))
	require.NoError(t, err)
	resp, err = http.Post("http://"+addr+"/webhooks/acr", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	msg, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, "acr.image.pushed.myregistry.hello-world", msg.Subject)
	env, err := bridge.DecodeMessage(msg)
	require.NoError(t, err)
	assert.Equal(t, "cb8c3971-9adc-488b-xxxx-43cbb4974ff5", env.ID)

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	str, err := js.Stream(ctx, "ACR_EVENTS")
	require.NoError(t, err)
	info, err := str.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.State.Msgs)
	assert.Equal(t, 10*time.Minute, info.Config.Duplicates)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	assert.NotEmpty(t, logs.field("shutting down", "timeout"))
	_, err = http.Get("http://" + addr + "/healthz")
	assert.Error(t, err, "the listener is closed")
}

func TestHelpListsSettings(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-h"}, &out, io.Discard))
	for _, v := range []string{"BRIDGE_LISTEN_ADDR", "BRIDGE_NATS_URL", "BRIDGE_STREAM_DUPLICATE_WINDOW", "10m", "ACR_EVENTS", "bridge tail"} {
		assert.Contains(t, out.String(), v)
	}
}

func TestBadConfigurationStopsStartup(t *testing.T) {
	t.Setenv("BRIDGE_MAX_EVENTS", "lots")
	err := run(context.Background(), nil, io.Discard, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "BRIDGE_MAX_EVENTS")
}

func TestRedactURL(t *testing.T) {
	got := redactURL("nats://user:s3cret@a:4222, nats://tok3n@b:4222,nats://c:4222")
	assert.NotContains(t, got, "s3cret")
	assert.NotContains(t, got, "tok3n")
	assert.True(t, strings.HasSuffix(got, "nats://c:4222"), got)
}
