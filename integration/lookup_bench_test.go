package integration

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/natsbridge/acr-nats-bridge/internal/registrytest"
	"github.com/stretchr/testify/require"
)

// lookupVariant is one way of running the bridge for the lookups benchmark.
type lookupVariant struct {
	name string
	// env is added to the bridge's; registryDelay is how long the registry takes for each request.
	env           []string
	registryDelay time.Duration
	// cold cycles through every pushed manifest, with no cache, so that each event makes a request;
	// otherwise the events name the manifests the warm-up looked up.
	cold bool
}

// lookupVariants: lookups off; on with a warm cache; on with no cache, the registry answering at once,
// then in 20 ms (a registry in another region).
func lookupVariants(host, caFile string) []lookupVariant {
	on := []string{"BRIDGE_REGISTRY_LOOKUP=best-effort", "BRIDGE_REGISTRY_HOSTS=" + host, "BRIDGE_REGISTRY_AUTH=anonymous", "SSL_CERT_FILE=" + caFile}
	return []lookupVariant{
		{name: "off"},
		{name: "warm", env: on},
		{name: "cold", env: append(on, "BRIDGE_REGISTRY_LOOKUP_CACHE_SIZE=0"), cold: true},
		{name: "cold-20ms", env: append(on, "BRIDGE_REGISTRY_LOOKUP_CACHE_SIZE=0"), registryDelay: 20 * time.Millisecond, cold: true},
	}
}

// lookupFormat writes Event Grid deliveries of pushes of the registry's manifests: the first warm of them
// again and again, or (cold) each in turn.
func lookupFormat(pushes []registrytest.Push, host string, warm int, cold bool) bodyFormat {
	var next atomic.Int64
	return func(prefix string, n int) (string, string) {
		var b strings.Builder
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			k := int(next.Add(1))
			if cold {
				k %= len(pushes)
			} else {
				k %= warm
			}
			p := pushes[k]
			fmt.Fprintf(&b, `{"id":"%s-%d","topic":%q,"subject":%q,"eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2026-12-01T10:00:00.1234567Z",`+
				`"data":{"id":"%s-%d","timestamp":"2026-12-01T10:00:00.1234567Z","action":"push","location":"westus",`+
				`"target":{"mediaType":%q,"size":%d,"digest":%q,"length":%d,"repository":%q,"tag":%q},`+
				`"request":{"id":"r","host":%q,"method":"PUT","useragent":"docker/24.0.7"}},"dataVersion":"1.0","metadataVersion":"1"}`,
				prefix, i, registrytest.Topic("myregistry"), p.Subject(), prefix, i, p.MediaType, p.Size, p.Digest, p.Size, p.Repository, p.Tag, host)
		}
		b.WriteByte(']')
		return "application/json", b.String()
	}
}

// benchLookups measures each variant on the scenarios, runs times, the variants taking turns.
func benchLookups(t testing.TB, scs []scenario, d time.Duration, runs, manifests int) {
	r := registrytest.New(t)
	pushes := r.PushMany(t, "team/app", manifests)
	const warm = 16
	variants := lookupVariants(r.LocalHost, r.CAFile)
	var out strings.Builder
	fmt.Fprintf(&out, "\n%-30s %-10s %10s %9s %9s %9s %10s %8s %9s\n", "scenario", "lookups", "events/s", "p50", "p99", "p99.9", "CPU s/1k", "RSS MiB", "failed")
	for _, sc := range scs {
		fs := map[string][]figures{}
		failed := map[string][]float64{}
		for run := range runs {
			order := append([]lookupVariant(nil), variants...)
			if run%2 == 1 {
				for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
					order[i], order[j] = order[j], order[i]
				}
			}
			for _, v := range order {
				r.Delay.Store(0)
				format := lookupFormat(pushes, r.LocalHost, warm, v.cold)
				// The warm-up looks up the warm set (cached unless the cache is off).
				rp := startReceiverWith(t, "bridge", v.env, 1)
				for i := 0; i < warm; i++ {
					warmedUpWith(t, rp.p, strings.TrimSuffix(strings.TrimPrefix(rp.url, "http://"), "/eventgrid"), format)
				}
				r.Delay.Store(int64(v.registryDelay))
				before := lookupsFailed(t, rp)
				fs[v.name] = append(fs[v.name], measure(t, rp, sc, d, run, format))
				failed[v.name] = append(failed[v.name], lookupsFailed(t, rp)-before)
				rp.p.stop(syscall.SIGTERM)
			}
		}
		for _, v := range variants {
			f := median(fs[v.name])
			fmt.Fprintf(&out, "%-30s %-10s %10.0f %9s %9s %9s %10.4f %8.1f %9.0f\n", sc.name, v.name, f.eventsPerSec, round(f.p50), round(f.p99), round(f.p999), f.cpuPer1000, f.rssMiB, slices.Max(failed[v.name]))
		}
	}
	fmt.Fprintf(&out, "(%s per run, median of %d runs, the variants taking turns; failed: the most lookups that failed (timed out) in one run; the registry (%d manifests) and the load generator in the test's process)\n", d, runs, manifests)
	if _, ok := t.(*testing.B); ok {
		fmt.Print(out.String())
		return
	}
	t.Log(out.String())
}

// lookupsFailed reads the bridge's count of failed lookups from its /metrics.
func lookupsFailed(t testing.TB, rp receiverProc) float64 {
	resp, err := http.Get(strings.TrimSuffix(rp.url, "/eventgrid") + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, `bridge_registry_lookups_total{result="failed"} `); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("no bridge_registry_lookups_total in /metrics")
	return 0
}

// BenchmarkLookups measures what registry lookups cost: go test ./integration -run '^$' -bench Lookups -benchtime 1x
// The registry holds more manifests than 64 connections have events in flight, so that no two lookups
// under way ask for the same one, which would be one request.
func BenchmarkLookups(b *testing.B) {
	for _, sc := range []scenario{scenarios[1], scenarios[3]} {
		b.Run(sc.short(), func(b *testing.B) {
			for range b.N {
				benchLookups(b, []scenario{sc}, 5*time.Second, 3, 8000)
			}
		})
	}
}
