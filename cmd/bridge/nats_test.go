package main

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/config"
)

// TestEmbeddedNATSSync: the embedded server syncs every write before its PubAck unless
// BRIDGE_EMBEDDED_NATS_SYNC names an interval, and its start-up line says which policy is in force.
func TestEmbeddedNATSSync(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value      string // "" leaves the default
		always     bool
		interval   time.Duration
		logSaysSub string
	}{
		{"", true, 0, `"sync":"always: every write is on disk before its PubAck"`},
		{"always", true, 0, `"sync":"always: every write is on disk before its PubAck"`},
		{"2m", false, 2 * time.Minute, `"sync":"every 2m0s: a power cut loses up to that much acknowledged data"`},
		{"5s", false, 5 * time.Second, `"sync":"every 5s: a power cut loses`},
	}
	for _, tc := range tests {
		t.Run("BRIDGE_EMBEDDED_NATS_SYNC="+tc.value, func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{"BRIDGE_EMBEDDED_NATS_ADDR": "127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_DIR": filepath.Join(t.TempDir(), "nats")}
			if tc.value != "" {
				vars["BRIDGE_EMBEDDED_NATS_SYNC"] = tc.value
			}
			cfg, err := config.Load(mapEnv(vars))
			require.NoError(t, err)
			logs := &logSink{}
			conn, err := startEmbedded(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
			require.NoError(t, err)
			t.Cleanup(func() { conn.close(slog.New(slog.DiscardHandler)) })

			js := conn.embedded.server().JetStreamConfig()
			require.NotNil(t, js, "JetStream is on")
			assert.Equal(t, tc.always, js.SyncAlways)
			if !tc.always {
				assert.Equal(t, tc.interval, js.SyncInterval)
			}
			assert.Contains(t, logs.String(), tc.logSaysSub)
		})
	}
}

// Two bridges on one embedded store directory: the second fails at once, saying which process holds it; the
// first's store is untouched. Once the first stops, the directory is free again.
func TestEmbeddedStoreIsLocked(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nats")
	cfg, err := config.Load(mapEnv(map[string]string{"BRIDGE_EMBEDDED_NATS_ADDR": "127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_DIR": dir}))
	require.NoError(t, err)
	first, err := startEmbedded(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	start := time.Now()
	_, err = startEmbedded(cfg, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Less(t, time.Since(start), 2*time.Second, "at once")
	assert.Contains(t, err.Error(), "is in use by another bridge (pid "+strconv.Itoa(os.Getpid())+")")
	first.close(slog.New(slog.DiscardHandler))
	again, err := startEmbedded(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err, "free once the first stopped")
	again.close(slog.New(slog.DiscardHandler))
}

// A port already in use fails at once, naming the setting.
func TestEmbeddedPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	cfg, err := config.Load(mapEnv(map[string]string{"BRIDGE_EMBEDDED_NATS_ADDR": l.Addr().String(), "BRIDGE_EMBEDDED_NATS_DIR": filepath.Join(t.TempDir(), "nats")}))
	require.NoError(t, err)
	start := time.Now()
	_, err = startEmbedded(cfg, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Less(t, time.Since(start), 2*time.Second, "at once, not after the server's 10 s wait")
	assert.Contains(t, err.Error(), "embedded NATS cannot listen on "+l.Addr().String()+" (BRIDGE_EMBEDDED_NATS_ADDR)")
}
