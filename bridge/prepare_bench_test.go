package bridge

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/natsbridge/acr-nats-bridge/internal/registrytest"
	"github.com/natsbridge/acr-nats-bridge/lookup"
)

// BenchmarkPrepare measures the delivery path's own work on a delivery: deciding every event and building
// its message, without NATS, with lookups off and with every manifest in the lookup cache:
// go test ./bridge -run '^$' -bench Prepare -benchmem
func BenchmarkPrepare(b *testing.B) {
	r := registrytest.New(b)
	digest := r.PushImage(b, "team/app", "v1", nil).Digest.String()
	hosts, err := lookup.ParseHosts([]string{r.Host})
	if err != nil {
		b.Fatal(err)
	}
	warm := lookup.NewClient(lookup.Options{Hosts: hosts, HTTPClient: r.HTTPClient(), Timeout: 5 * time.Second, Concurrency: 4, CacheSize: 10})
	if _, err := warm.Lookup(context.Background(), r.Host, "team/app", digest); err != nil {
		b.Fatal(err)
	}
	for _, lookups := range []string{"off", "warm"} {
		for _, n := range []int{1, 50} {
			b.Run(fmt.Sprintf("lookups=%s/events=%d", lookups, n), func(b *testing.B) {
				p := fuzzPaths()[false]
				if lookups == "warm" {
					p.opts.Registry = warm
				}
				events := make([]string, n)
				for i := range n {
					events[i] = fmt.Sprintf(`{"id":"ev-%d","topic":"/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/myregistry","subject":"team/app:v1","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T10:00:00.1234567Z","dataVersion":"1.0","metadataVersion":"1","data":{"id":"d-%d","timestamp":"2024-05-01T10:00:00.123456789Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,"digest":%q,"length":10,"repository":"team/app","tag":"v1"},"request":{"id":"r","host":%q,"method":"PUT","useragent":"test"}}}`, i, i, digest, r.Host)
				}
				body := []byte("[" + strings.Join(events, ",") + "]")
				req := httptest.NewRequest("POST", "/eventgrid", nil)
				d, err := fuzzDecoder.Decode(req.Header, body)
				if err != nil {
					b.Fatal(err)
				}
				out, err := p.prepare(context.Background(), &Delivery{Events: d.Events, Invalid: d.Invalid}, &Report{Results: make([]Result, len(d.Events))})
				if err != nil {
					b.Fatal(err)
				}
				if looked := strings.Contains(string(out.msgs[0].Data), `"lookup":"ok"`); looked != (lookups == "warm") {
					b.Fatalf("lookups %s, but: %s", lookups, out.msgs[0].Data)
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
}
