package integration

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// durability is one way to run the bridge with its embedded NATS server: how often the server syncs to
// disk, and whether a batched delivery is published as atomic batches.
type durability struct {
	name string
	env  []string
}

var durabilities = []durability{
	{"sync 2m, one by one (auto)", []string{"BRIDGE_EMBEDDED_NATS_SYNC=2m"}},
	{"sync 2m, atomic", []string{"BRIDGE_EMBEDDED_NATS_SYNC=2m", "BRIDGE_ATOMIC_BATCHES=true"}},
	{"sync always, one by one", []string{"BRIDGE_EMBEDDED_NATS_SYNC=always", "BRIDGE_ATOMIC_BATCHES=false"}},
	{"sync always, atomic (default)", nil},
}

// startEmbedded starts the built bridge with its embedded NATS server storing in a fresh directory on
// disk, as `go run ./cmd/bridge` runs, and waits until it stores a delivery.
func startEmbedded(t testing.TB, env []string) receiverProc {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, append([]string{"BRIDGE_LISTEN_ADDR=" + addr, "BRIDGE_LOG_LEVEL=warn",
		"BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir()}, env...), bridgeBin)
	warmup := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	require.Eventually(t, func() bool {
		resp, err := warmup.Post("http://"+addr+"/eventgrid", "application/json", strings.NewReader(batchBody("warmup", 0, 2)))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "the bridge did not serve")
	return receiverProc{p: p, url: "http://" + addr + "/eventgrid"}
}

// compareDurability measures each scenario under each durability, runs times each (taking turns, a
// fresh bridge and store each time), and prints the medians side by side.
func compareDurability(t testing.TB, scs []scenario, ds []durability, d time.Duration, runs int) {
	var out strings.Builder
	fmt.Fprintf(&out, "\n%-30s %-31s %10s %9s %9s %10s %8s\n", "scenario", "embedded NATS", "events/s", "p50", "p99", "CPU s/1k", "RSS MiB")
	for _, sc := range scs {
		fs := make([][]figures, len(ds))
		for run := range runs {
			// Rotate who goes first, so that a slow spell of a shared machine falls on each in turn.
			for k := range ds {
				i := (k + run) % len(ds)
				r := startEmbedded(t, ds[i].env)
				fs[i] = append(fs[i], measure(t, r, sc, d, run))
				r.p.stop(syscall.SIGTERM)
			}
		}
		for i, dur := range ds {
			f := median(fs[i])
			fmt.Fprintf(&out, "%-30s %-31s %10.0f %9s %9s %10.4f %8.1f\n", sc.name, dur.name, f.eventsPerSec, round(f.p50), round(f.p99), f.cpuPer1000, f.rssMiB)
		}
	}
	fmt.Fprintf(&out, "(%s per run, median of %d runs taking turns; the bridge with its embedded NATS server storing on %s; load generator in the test process)\n",
		d, runs, os.TempDir())
	if _, ok := t.(*testing.B); ok {
		fmt.Print(out.String())
		return
	}
	t.Log(out.String())
}

// durabilitiesFor are the durabilities that differ for a scenario: a lone event is never batched.
func durabilitiesFor(sc scenario) []durability {
	if sc.batch == 1 {
		return []durability{durabilities[0], durabilities[3]}
	}
	return durabilities
}

// BenchmarkDurability is what syncing every write costs, and what atomic batches win back:
// go test ./integration -run '^$' -bench Durability -benchtime 1x (one shape: -bench Durability/batch50-64).
func BenchmarkDurability(b *testing.B) {
	for _, sc := range scenarios {
		b.Run(sc.short(), func(b *testing.B) {
			for range b.N {
				compareDurability(b, []scenario{sc}, durabilitiesFor(sc), 5*time.Second, 3)
			}
		})
	}
}

// TestDurabilitySmoke runs the durability comparison briefly, so CI prints figures and the machinery keeps
// working. It asserts only that every request was answered 200, never a timing.
func TestDurabilitySmoke(t *testing.T) {
	for _, sc := range scenarios {
		compareDurability(t, []scenario{sc}, durabilitiesFor(sc), 500*time.Millisecond, 1)
	}
}
