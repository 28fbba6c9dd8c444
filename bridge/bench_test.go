package bridge_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkHandler measures one delivery through the handler (decode, normalise, publish to an
// in-process JetStream, wait for the ack), without the network: go test ./bridge -run '^$' -bench Handler
func BenchmarkHandler(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			e := newEnv(b)
			b.ReportAllocs()
			events := make([]string, n)
			for i := range n {
				events[i] = egPush(fmt.Sprintf("ev-%d", i), "team/app", "v1")
			}
			tmpl := "[" + strings.Join(events, ",") + "]"
			srv := e.handler
			b.ResetTimer()
			for i := range b.N {
				body := strings.ReplaceAll(tmpl, `"id":"ev-`, fmt.Sprintf(`"id":"b%d-`, i))
				req := httptest.NewRequest(http.MethodPost, "/eventgrid", bytes.NewReader([]byte(body)))
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
