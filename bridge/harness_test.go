package bridge_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

const streamName = "ACR_EVENTS"

// setup is what a test may change before its bridge starts.
type setup struct {
	path   bridge.PathOptions
	opts   bridge.Options
	stream bridge.StreamConfig
	core   bool
	// noStream skips creating the stream before the bridge starts.
	noStream bool
	// publishTimeout bounds the wait for a request's acks.
	publishTimeout time.Duration
}

// testEnv is a bridge behind a real HTTP server, publishing to a real in-process nats-server.
type testEnv struct {
	t    testing.TB
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	url  string
	logs *syncBuffer
	// handler is the bridge itself, for benchmarks that call it without the network.
	handler *bridge.Server
	// path is the handler's delivery path, which pulled events take too.
	path *bridge.Path
}

func defaultSetup() setup {
	return setup{
		path: bridge.PathOptions{
			Subjects:    bridge.Subjects{Prefix: "acr", Passthrough: "eventgrid"},
			Mode:        bridge.ModeStructured,
			Passthrough: true,
		},
		opts: bridge.Options{
			AllowedOrigins: cloudevents.Origins{"eventgrid.azure.net"},
			MaxBodyBytes:   4 << 20,
			MaxEvents:      5000,
			MaxInflight:    64,
			RetryAfter:     5 * time.Second,
		},
		publishTimeout: 5 * time.Second,
		stream: bridge.StreamConfig{
			Name:       streamName,
			Subjects:   []string{"acr.>", "eventgrid.>"},
			Create:     true,
			Duplicates: 10 * time.Minute,
			MaxAge:     time.Hour,
			Replicas:   1,
			Storage:    jetstream.FileStorage,
			// As the bridge runs by default.
			AtomicBatches: bridge.BatchesAlways,
		},
	}
}

func startNATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second), "nats-server did not start")
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

func newEnv(t testing.TB, mods ...func(*setup)) *testEnv {
	t.Helper()
	s := defaultSetup()
	for _, m := range mods {
		m(&s)
	}
	ns := startNATS(t)
	nc, err := nats.Connect(ns.ClientURL(), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var path *bridge.Path
	if s.core {
		path = bridge.NewPath(s.path, bridge.NewCore(nc, s.publishTimeout), log)
	} else {
		pub, err := bridge.NewJetStream(nc, s.stream, s.publishTimeout, 10000, s.path.Metrics, log)
		require.NoError(t, err)
		t.Cleanup(pub.Close)
		if !s.noStream {
			require.NoError(t, pub.EnsureStream(context.Background()))
		}
		path = bridge.NewPath(s.path, pub, log)
	}
	srv := bridge.NewServer(s.opts, path, log)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &testEnv{t: t, ns: ns, nc: nc, js: js, url: hs.URL, logs: logs, handler: srv, path: path}
}

// post sends body to path with the given headers (name, value pairs) and returns status, headers, body.
func (e *testEnv) post(path string, body []byte, headers ...string) (int, http.Header, string) {
	e.t.Helper()
	return e.do(http.MethodPost, path, body, headers...)
}

func (e *testEnv) do(method, path string, body []byte, headers ...string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	require.NoError(e.t, err)
	if len(headers)%2 != 0 {
		e.t.Fatalf("headers come in pairs: %q", headers)
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// stored returns every message in the stream, in order; none if the stream does not exist.
func (e *testEnv) stored() []*jetstream.RawStreamMsg {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str, err := e.js.Stream(ctx, streamName)
	if err != nil {
		require.ErrorIs(e.t, err, jetstream.ErrStreamNotFound)
		return nil
	}
	info, err := str.Info(ctx)
	require.NoError(e.t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := str.GetMsg(ctx, seq)
		require.NoError(e.t, err)
		out = append(out, m)
	}
	return out
}

// syncBuffer is a log sink that tests can read while the bridge writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Contains(sub string) bool { return strings.Contains(s.String(), sub) }
