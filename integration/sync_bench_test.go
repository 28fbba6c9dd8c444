package integration

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// durability is one way to run the bridge: where it stores, how often that syncs to disk, and whether a
// batched delivery is published as atomic batches. start starts the bridge and its NATS; the func it
// returns stops them.
type durability struct {
	name  string
	start func(t testing.TB) (receiverProc, func())
}

// The embedded server, as `go run ./cmd/bridge` runs it.
var durabilities = []durability{
	{"sync 2m, one by one (auto)", embedded("BRIDGE_EMBEDDED_NATS_SYNC=2m")},
	{"sync 2m, atomic", embedded("BRIDGE_EMBEDDED_NATS_SYNC=2m", "BRIDGE_ATOMIC_BATCHES=true")},
	{"sync always, one by one", embedded("BRIDGE_EMBEDDED_NATS_SYNC=always", "BRIDGE_ATOMIC_BATCHES=false")},
	{"sync always, atomic (default)", embedded()},
}

// A three-server cluster with an R3 stream, as deployments/ runs it (on one machine here).
var clusterDurabilities = []durability{
	{"R3, sync 2m, one by one", cluster("", false)},
	{"R3, sync 2m, atomic", cluster("", true)},
	{"R3, sync always, one by one", cluster("always", false)},
	{"R3, sync always, atomic", cluster("always", true)},
}

// embedded starts the built bridge with env and its embedded NATS server storing in a fresh directory on
// disk.
func embedded(env ...string) func(testing.TB) (receiverProc, func()) {
	return func(t testing.TB) (receiverProc, func()) {
		r := startBridgeFor(t, append([]string{"BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir()}, env...))
		return r, func() { r.p.stop(syscall.SIGTERM) }
	}
}

// cluster starts three nats-server processes syncing as sync says, the R3 stream, and the built bridge
// on them, with BRIDGE_ATOMIC_BATCHES=atomic.
func cluster(sync string, atomic bool) func(testing.TB) (receiverProc, func()) {
	return func(t testing.TB) (receiverProc, func()) {
		nodes, url := natsCluster(t, sync)
		nc, err := nats.Connect(url)
		require.NoError(t, err)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		createR3Stream(t, js)
		nc.Close()
		r := startBridgeFor(t, []string{"BRIDGE_NATS_URL=" + url, "BRIDGE_STREAM_CREATE=false", fmt.Sprintf("BRIDGE_ATOMIC_BATCHES=%t", atomic)})
		return r, func() {
			r.p.stop(syscall.SIGTERM)
			for _, n := range nodes {
				n.p.stop(syscall.SIGTERM)
			}
		}
	}
}

// httpsEmbedded is embedded() serving HTTPS from a certificate of a CA of the test's own, which the load
// generator trusts: TLS 1.3, HTTP/1.1 with keep-alive, as the plain HTTP runs.
func httpsEmbedded(env ...string) func(testing.TB) (receiverProc, func()) {
	return func(t testing.TB) (receiverProc, func()) {
		ca := newTestCA(t)
		certPEM, keyPEM := ca.issue(t, 1)
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
		require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := start(t, append([]string{"BRIDGE_LISTEN_ADDR=" + addr, "BRIDGE_LOG_LEVEL=warn", "BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0",
			"BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir(), "BRIDGE_TLS_CERT_FILE=" + certFile, "BRIDGE_TLS_KEY_FILE=" + keyFile}, env...), bridgeBin)
		r := receiverProc{p: p, url: "https://" + addr + "/eventgrid", tls: &tls.Config{RootCAs: ca.pool}}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: r.tls, DisableKeepAlives: true}}
		require.Eventually(t, func() bool {
			resp, err := client.Post(r.url, "application/json", strings.NewReader(batchBody("warmup", 0, 2)))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}, 30*time.Second, 20*time.Millisecond, "%s did not serve:\n%s", addr, p.out)
		return r, func() { p.stop(syscall.SIGTERM) }
	}
}

// BenchmarkHTTPS is what TLS costs the bridge: plain HTTP against HTTPS (TLS 1.3, HTTP/1.1 keep-alive),
// the embedded server with its defaults: go test ./integration -run '^$' -bench HTTPS -benchtime 1x
func BenchmarkHTTPS(b *testing.B) {
	// Syncing every write hides what TLS costs behind the disk; with a sync interval, the CPU shows it.
	ds := []durability{
		{"plain HTTP", embedded()}, {"HTTPS, keep-alive", httpsEmbedded()},
		{"plain HTTP, sync 2m", embedded("BRIDGE_EMBEDDED_NATS_SYNC=2m")}, {"HTTPS, keep-alive, sync 2m", httpsEmbedded("BRIDGE_EMBEDDED_NATS_SYNC=2m")},
	}
	for _, sc := range scenarios {
		b.Run(sc.short(), func(b *testing.B) {
			for range b.N {
				compareDurability(b, []scenario{sc}, ds, 5*time.Second, 3)
			}
		})
	}
}

// startBridgeFor starts the built bridge with env and waits until it stores a delivery.
func startBridgeFor(t testing.TB, env []string) receiverProc {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, append([]string{"BRIDGE_LISTEN_ADDR=" + addr, "BRIDGE_LOG_LEVEL=warn"}, env...), bridgeBin)
	return warmedUp(t, p, addr, 2) // a batch, so that the atomic batch path is warm too
}

// compareDurability measures each scenario under each durability, runs times each (taking turns, a
// fresh bridge and store each time), and prints the medians side by side.
func compareDurability(t testing.TB, scs []scenario, ds []durability, d time.Duration, runs int) {
	var out strings.Builder
	fmt.Fprintf(&out, "\n%-30s %-31s %10s %9s %9s %10s %8s\n", "scenario", "setting", "events/s", "p50", "p99", "CPU s/1k", "RSS MiB")
	for _, sc := range scs {
		fs := make([][]figures, len(ds))
		for run := range runs {
			// Rotate who goes first, so that a slow spell of a shared machine falls on each in turn.
			for k := range ds {
				i := (k + run) % len(ds)
				r, stop := ds[i].start(t)
				fs[i] = append(fs[i], measure(t, r, sc, d, run, eventGridFormat))
				stop()
			}
		}
		for i, dur := range ds {
			f := median(fs[i])
			fmt.Fprintf(&out, "%-30s %-31s %10.0f %9s %9s %10.4f %8.1f\n", sc.name, dur.name, f.eventsPerSec, round(f.p50), round(f.p99), f.cpuPer1000, f.rssMiB)
		}
	}
	fmt.Fprintf(&out, "(%s per run, median of %d runs taking turns; NATS storing on %s; CPU and RSS of the bridge process, the embedded server included; load generator in the test process)\n",
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

// BenchmarkClusterDurability is the same on a three-server cluster with an R3 stream:
// go test ./integration -run '^$' -bench ClusterDurability -benchtime 1x. The three servers, the bridge
// and the load share the machine, so its figures compare the settings with each other, not with a
// cluster of three machines.
func BenchmarkClusterDurability(b *testing.B) {
	for _, sc := range scenarios {
		if sc.conns == 1 {
			continue
		}
		b.Run(sc.short(), func(b *testing.B) {
			ds := clusterDurabilities
			if sc.batch == 1 {
				ds = []durability{ds[0], ds[2]}
			}
			for range b.N {
				compareDurability(b, []scenario{sc}, ds, 5*time.Second, 3)
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
