package bridge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hostileRequest is one request the generator throws at the bridge.
type hostileRequest struct {
	method, path string
	headers      http.Header
	body         []byte
}

// hostileGen makes requests no sample holds: mutated samples, deep and wide JSON, duplicate keys,
// invalid UTF-8, wrong types, odd headers, unknown paths, oversized bodies. It is seeded, so a failure
// can be replayed.
type hostileGen struct {
	r       *rand.Rand
	samples [][]byte
}

func (g *hostileGen) next(token string) hostileRequest {
	req := hostileRequest{method: http.MethodPost, path: "/eventgrid", headers: http.Header{"Content-Type": {"application/json"}}}
	if g.r.IntN(2) == 0 {
		req.path = "/webhooks/acr/" + g.pick([]string{"reg", "a.b", "%2A", "x y", "_", strings.Repeat("r", 300)})
	}
	switch g.r.IntN(3) {
	case 0: // no credentials
	case 1:
		req.headers.Set("Authorization", "Bearer "+token)
	default:
		req.headers.Set("Authorization", g.pick([]string{"Bearer " + token[:8], "Bearer ", "Basic " + token, "Bearer a.b.c", "bearer " + token + " extra"}))
	}
	sample := g.samples[g.r.IntN(len(g.samples))]
	switch g.r.IntN(12) {
	case 0, 1, 2, 3:
		req.body = g.mutate(sample)
	case 4:
		d := 50 + g.r.IntN(3000)
		req.body = []byte(strings.Repeat(`{"a":[`, d) + strings.Repeat("]}", d))
	case 5:
		req.body = []byte(`[` + strings.Repeat(`{"id":"x","id":"y","eventType":"T"},`, 1+g.r.IntN(50)) + `1]`)
	case 6:
		req.body = append(bytes.Clone(sample[:len(sample)/2]), 0xff, 0xfe, '"', '}')
	case 7:
		req.body = []byte(fmt.Sprintf(`{"id":%s,"eventType":%s,"data":%s}`, g.value(), g.value(), g.value()))
	case 8:
		req.body = []byte(`[` + strings.Repeat(`1e999,`, g.r.IntN(10000)) + `0]`)
	case 9:
		req.body = bytes.Repeat([]byte("A"), 4<<20+g.r.IntN(1000))
	case 10:
		req.headers.Set("ce-specversion", g.pick([]string{"1.0", "0.3", "", "99"}))
		req.headers.Set("ce-id", g.pick([]string{"", "h", " h\t", strings.Repeat("i", 5000)}))
		req.headers.Set("ce-type", g.pick([]string{"Microsoft.ContainerRegistry.ImagePushed", "", "*"}))
		req.body = g.mutate(sample)
	default:
		req.method = g.pick([]string{"GET", "PUT", "DELETE", "PATCH", "OPTIONS"})
		req.path = g.pick([]string{"/eventgrid", "/webhooks/acr/x", "/../eventgrid", "/metrics?x=1", "/nope"})
		req.body = sample
	}
	return req
}

func (g *hostileGen) pick(s []string) string { return s[g.r.IntN(len(s))] }

// value is a random JSON value of the wrong kind for most fields.
func (g *hostileGen) value() string {
	return g.pick([]string{`null`, `true`, `-0`, `1e308`, `123456789012345678901234567890`, `""`, `"\u0000"`, `[]`, `{}`, `[{}]`, `"x"`, `{"target":"x"}`})
}

// mutate flips, inserts, deletes and duplicates bytes of b, and sometimes truncates it.
func (g *hostileGen) mutate(b []byte) []byte {
	out := bytes.Clone(b)
	for range 1 + g.r.IntN(8) {
		if len(out) == 0 {
			break
		}
		i := g.r.IntN(len(out))
		switch g.r.IntN(5) {
		case 0:
			out[i] = byte(g.r.IntN(256))
		case 1:
			out = append(out[:i], append([]byte(g.pick([]string{"{", "}", "[", "]", `"`, ",", ":", `\`, "\x00", "é", `"id":"z",`})), out[i:]...)...)
		case 2:
			out = append(out[:i], out[i+1:]...)
		case 3:
			j := min(len(out), i+g.r.IntN(64))
			out = append(out[:j], append(bytes.Clone(out[i:j]), out[j:]...)...)
		default:
			out = out[:i]
		}
	}
	return out
}

// TestHostileFloodWhileValidEventsFlow: valid events from authenticated senders keep arriving, each
// exactly once, while other senders throw thousands of hostile requests. Nothing a hostile request does
// reaches NATS except what its own 200 answer counted, no request is answered 500, and the bridge's
// NATS connection stays up.
func TestHostileFloodWhileValidEventsFlow(t *testing.T) {
	e := newEnv(t, withTokens, func(s *setup) { s.opts.MaxInflight = 8 })
	files, err := filepath.Glob(filepath.Join("testdata", "in", "*.json"))
	require.NoError(t, err)
	var samples [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		samples = append(samples, b)
	}

	const validEvents, hostileRequests, senders = 1200, 2400, 6
	client := &http.Client{Timeout: 30 * time.Second}
	// send returns the status and body, or 0 when the request did not complete: the bridge may close
	// the connection on a client still sending a body it has refused.
	send := func(r hostileRequest) (int, []byte) {
		req, err := http.NewRequest(r.method, e.url+r.path, bytes.NewReader(r.body))
		if !assert.NoError(t, err) {
			return 0, nil
		}
		req.Header = r.headers
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}

	var wg sync.WaitGroup
	var hostileStored, hostileAccepted, rejected, server5xx atomic.Int64
	statuses := sync.Map{}
	for s := range senders {
		wg.Go(func() {
			g := &hostileGen{r: rand.New(rand.NewPCG(42, uint64(s))), samples: samples}
			for range hostileRequests / senders {
				code, body := send(g.next(token1))
				n, _ := statuses.LoadOrStore(code, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				switch {
				case code == 200 && len(body) > 0 && body[0] == '{':
					var sum struct{ Events, Duplicates int }
					if json.Unmarshal(body, &sum) == nil {
						hostileStored.Add(int64(sum.Events - sum.Duplicates))
					}
					hostileAccepted.Add(1)
				case code >= 500 && code != 503:
					server5xx.Add(1)
				default:
					rejected.Add(1)
				}
			}
		})
		wg.Go(func() {
			for i := s; i < validEvents; i += senders {
				id := fmt.Sprintf("valid-%d", i)
				r := hostileRequest{method: http.MethodPost, path: "/eventgrid", headers: http.Header{
					"Content-Type": {"application/json"}, "Authorization": {"Bearer " + token2}}, body: []byte(egPush(id, fmt.Sprintf("team/app%d", i%7), "v1"))}
				if i%3 == 1 {
					r.path = "/webhooks/acr/reg"
					r.body = []byte(fmt.Sprintf(`{"id":%q,"timestamp":"2024-05-01T10:00:00Z","action":"push","target":{"repository":"team/app%d","tag":"v1"}}`, id, i%7))
				}
				for attempt := 0; ; attempt++ {
					code, body := send(r)
					if code == 200 {
						break
					}
					// Over the in-flight cap under the flood: retry, as Event Grid would.
					if !assert.Contains(t, []int{0, 503}, code, "valid event %s: %s", id, body) ||
						!assert.Less(t, attempt, 1000, "valid event %s never admitted", id) {
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()

	msgs := e.stored()
	valid := map[string]int{}
	var other int64
	for _, m := range msgs {
		id := m.Header.Get("Nats-Msg-Id")
		if strings.HasPrefix(id, "valid-") {
			valid[id]++
			assert.True(t, strings.HasPrefix(m.Subject, "acr.image.pushed."), m.Subject)
			continue
		}
		other++
	}
	assert.Len(t, valid, validEvents, "every valid event arrives")
	for id, n := range valid {
		assert.Equal(t, 1, n, "%s stored once", id)
	}
	assert.Equal(t, hostileStored.Load(), other, "hostile requests stored exactly what their 200 answers counted")
	assert.Zero(t, server5xx.Load(), "no hostile request is a 500")
	assert.True(t, e.nc.IsConnected())
	summary := map[int]int64{}
	statuses.Range(func(k, v any) bool { summary[k.(int)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("hostile requests by status: %v; %d accepted, storing %d messages; %d valid events stored once each",
		summary, hostileAccepted.Load(), other, len(valid))
}
