package bridge_test

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/bridge"
)

func withMetrics(s *setup) {
	reg := prometheus.NewRegistry()
	s.path.Metrics = bridge.NewMetrics(reg)
	s.opts.MetricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// scrape reads /metrics as Prometheus would and returns every sample by its series, as written:
// `name{label="value",...}`.
func (e *testEnv) scrape() map[string]float64 {
	e.t.Helper()
	code, _, body := e.do("GET", "/metrics", nil)
	require.Equal(e.t, 200, code)
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(e.t, err, line)
		out[line[:i]] = v
	}
	return out
}

func TestMetricsMove(t *testing.T) {
	e := newEnv(t, withMetrics)
	const push = `{"id":"m1","action":"push","timestamp":"2024-05-01T10:00:00Z","target":{"repository":"app","tag":"1"}}`
	for range 2 {
		code, _, resp := e.post("/webhooks/acr/reg", []byte(push))
		require.Equal(t, 200, code, resp)
	}
	batch := `[` + egPush("m2", "app", "2") + `,{"id":"m3","topic":"/t","eventType":"Microsoft.Storage.BlobCreated","data":{}},` +
		`{"id":"m4","topic":"/registries/reg","eventType":"Microsoft.ContainerRegistry.ImageDeleted","data":"oops"}]`
	code, _, resp := e.post("/eventgrid", []byte(batch))
	require.Equal(t, 200, code, resp)
	code, _, _ = e.post("/eventgrid", []byte(`{nope`))
	require.Equal(t, 400, code)
	code, _, _ = e.post("/eventgrid", []byte(`[`+strings.Repeat(" ", 5<<20)+`]`))
	require.Equal(t, 413, code)
	for i := range 20 {
		code, _, resp = e.post("/eventgrid", []byte(fmt.Sprintf(`{"id":"x%d","topic":"/t","eventType":"Hostile.Type.%d","data":{}}`, i, i)))
		require.Equal(t, 200, code, resp)
	}
	code, _, _ = e.do("GET", "/healthz", nil)
	require.Equal(t, 200, code)
	code, _, resp = e.post("/eventgrid", []byte(`[{"id":"v","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"c"}}]`))
	require.Equal(t, 200, code, resp)

	m := e.scrape()
	want := map[string]float64{
		`bridge_events_received_total{origin="webhook",type="Microsoft.ContainerRegistry.ImagePushed"}`:    2,
		`bridge_events_received_total{origin="eventgrid",type="Microsoft.ContainerRegistry.ImagePushed"}`:  1,
		`bridge_events_received_total{origin="eventgrid",type="Microsoft.ContainerRegistry.ImageDeleted"}`: 1,
		`bridge_events_received_total{origin="eventgrid",type="other"}`:                                    21,
		`bridge_events_published_total{kind="acr"}`:                                                        2,
		`bridge_events_published_total{kind="passthrough"}`:                                                21,
		`bridge_events_published_total{kind="deadletter"}`:                                                 1,
		`bridge_events_duplicates_total`:                                                                   1,
		`bridge_events_deadlettered_total`:                                                                 1,
		`bridge_events_passed_through_total`:                                                               21,
		`bridge_requests_rejected_total{reason="malformed"}`:                                               1,
		`bridge_requests_rejected_total{reason="too_large"}`:                                               1,
		`bridge_http_requests_total{code="200",route="POST /webhooks/acr/{registry}"}`:                     2,
		`bridge_http_requests_total{code="200",route="POST /eventgrid"}`:                                   22,
		`bridge_http_requests_total{code="400",route="POST /eventgrid"}`:                                   1,
		`bridge_http_requests_total{code="413",route="POST /eventgrid"}`:                                   1,
		`bridge_http_requests_total{code="200",route="GET /healthz"}`:                                      1,
		`bridge_publish_duration_seconds_count`:                                                            23,
		`bridge_http_request_duration_seconds_count{route="POST /eventgrid"}`:                              24,
		`bridge_inflight_requests`:                                                                         0,
	}
	for series, v := range want {
		assert.Equal(t, v, m[series], series)
	}
	for series := range m {
		assert.NotContains(t, series, "Hostile", "an event type from the input never becomes a label value")
		assert.NotContains(t, series, `type="none"`, "every event received has a type")
	}
}

func TestMetricsOfRefusals(t *testing.T) {
	e := newEnv(t, withMetrics, withTokens, func(s *setup) { s.opts.MaxInflight = 1 })
	code, _, _ := e.post("/eventgrid", []byte(egPush("r1", "app", "1")))
	require.Equal(t, 401, code)
	e.ns.Shutdown()
	code, _, _ = e.post("/eventgrid", []byte(egPush("r2", "app", "1")), "Authorization", "Bearer "+token1)
	require.Equal(t, 503, code)

	m := e.scrape()
	assert.Equal(t, 1.0, m[`bridge_requests_rejected_total{reason="unauthorized"}`])
	assert.Equal(t, 1.0, m[`bridge_requests_rejected_total{reason="unavailable"}`])
	assert.Equal(t, 1.0, m[`bridge_http_requests_total{code="401",route="POST /eventgrid"}`])
	assert.Zero(t, m[`bridge_events_published_total{kind="acr"}`])
}

// Before the first event, bridge_events_received_total has its series at 0, as the docs say of every
// label: a rate or an alert has a series from the start.
func TestReceivedStartsAtZero(t *testing.T) {
	e := newEnv(t, withMetrics)
	m := e.scrape()
	for _, origin := range []string{"webhook", "eventgrid", "cloudevents"} {
		for _, typ := range []string{"Microsoft.ContainerRegistry.ImagePushed", "Microsoft.ContainerRegistry.Ping", "other"} {
			series := fmt.Sprintf(`bridge_events_received_total{origin=%q,type=%q}`, origin, typ)
			v, ok := m[series]
			assert.True(t, ok, "%s exists", series)
			assert.Zero(t, v, series)
		}
	}
}

// A sender that drops its connection before its body is complete is counted as body_read: its own fault,
// not NATS refusing, so the alert for NATS does not fire for a few broken senders.
func TestBodyNotFinishedIsItsOwnReason(t *testing.T) {
	e := newEnv(t, withMetrics)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	require.NoError(t, err)
	_, err = fmt.Fprintf(conn, "POST /eventgrid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{\"id\":")
	require.NoError(t, err)
	conn.Close()
	require.Eventually(t, func() bool { return e.scrape()[`bridge_requests_rejected_total{reason="body_read"}`] == 1 }, 5*time.Second, 20*time.Millisecond)
	assert.Zero(t, e.scrape()[`bridge_requests_rejected_total{reason="unavailable"}`])
}
