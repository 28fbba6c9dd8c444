package bridge

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkPrepare measures the delivery path's own work on a delivery: deciding every event and building
// its message, without NATS: go test ./bridge -run '^$' -bench Prepare -benchmem
func BenchmarkPrepare(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			p := fuzzPaths()[false]
			events := make([]string, n)
			for i := range n {
				events[i] = fmt.Sprintf(`{"id":"ev-%d","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/myregistry","subject":"team/app:v1","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T10:00:00.1234567Z","dataVersion":"1.0","metadataVersion":"1","data":{"id":"d-%d","timestamp":"2024-05-01T10:00:00.123456789Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,"digest":"sha256:abc","length":10,"repository":"team/app","tag":"v1"},"request":{"id":"r","host":"myregistry.azurecr.io","method":"PUT","useragent":"test"}}}`, i, i)
			}
			body := []byte("[" + strings.Join(events, ",") + "]")
			r := httptest.NewRequest("POST", "/eventgrid", nil)
			d, err := fuzzDecoder.Decode(r.Header, body)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.prepare(context.Background(), &Delivery{Events: d.Events, Invalid: d.Invalid}, &Report{Results: make([]Result, len(d.Events))}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
