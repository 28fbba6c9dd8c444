package bridge_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
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
	logs *natstest.LogBuffer
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

func newEnv(t testing.TB, mods ...func(*setup)) *testEnv {
	t.Helper()
	s := defaultSetup()
	for _, m := range mods {
		m(&s)
	}
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.ClientURL(), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	logs := &natstest.LogBuffer{}
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
	return natstest.Stored(e.t, e.js, streamName)
}
