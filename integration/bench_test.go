package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// scenario is one load shape: concurrent keep-alive connections, each posting Event Grid deliveries of
// batch events one after the other.
type scenario struct {
	name  string
	conns int
	batch int
}

var scenarios = []scenario{
	{"single event, 1 connection", 1, 1},
	{"single event, 64 connections", 64, 1},
	{"batch of 50, 1 connection", 1, 50},
	{"batch of 50, 64 connections", 64, 50},
}

// short names a scenario for -bench: single-1, single-64, batch50-1, batch50-64.
func (sc scenario) short() string {
	if sc.batch == 1 {
		return fmt.Sprintf("single-%d", sc.conns)
	}
	return fmt.Sprintf("batch%d-%d", sc.batch, sc.conns)
}

// figures are what one run of one scenario measured.
type figures struct {
	eventsPerSec       float64
	p50, p99, p999     time.Duration
	cpuPer1000, rssMiB float64
}

// receiverProc is a receiver under test: the bridge or the reference receiver, as a process.
type receiverProc struct {
	p   *proc
	url string
	// tls, for an https url, is the client's configuration: HTTP/1.1 over TLS, keep-alive.
	tls *tls.Config
}

// bodyFormat writes a delivery of n events with ids prefix-0 .. prefix-(n-1), and its content type.
type bodyFormat func(prefix string, n int) (contentType, body string)

// eventGridFormat is an Event Grid schema delivery, as the bridge and the reference receive it.
func eventGridFormat(prefix string, n int) (string, string) {
	return "application/json", batchBody(prefix, 0, n)
}

// cloudEventFormat is one CloudEvent in structured mode, as the CloudEvents SDK receiver takes it (it
// takes no batches); the bridge takes the same.
func cloudEventFormat(prefix string, n int) (string, string) {
	if n != 1 {
		panic("cloudEventFormat: one event per delivery")
	}
	id := prefix + "-0"
	return "application/cloudevents+json", fmt.Sprintf(`{"specversion":"1.0","id":%q,`+
		`"source":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry",`+
		`"type":"Microsoft.ContainerRegistry.ImagePushed","subject":"team/app:v1","time":"2024-05-01T10:00:00.1234567Z",`+
		`"datacontenttype":"application/json","data":{"id":%q,"timestamp":"2024-05-01T10:00:00.1234567Z","action":"push","location":"westus",`+
		`"target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":524,"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","length":524,"repository":"team/app","tag":"v1"},`+
		`"request":{"id":"r","host":"myregistry.azurecr.io","method":"PUT","useragent":"docker/24.0.7"}}}`, id, id)
}

// startReceiver starts a fresh nats-server (file storage) with the stream, then the receiver on it:
// the bridge, the reference, or cesdk (the CloudEvents SDK receiver).
func startReceiver(t testing.TB, which string) receiverProc {
	return startReceiverWith(t, which, nil, 1)
}

// startReceiverWith is startReceiver with env added to the bridge's environment, warmed up with a
// delivery of warmup events.
func startReceiverWith(t testing.TB, which string, bridgeEnv []string, warmup int) receiverProc {
	port := freePort(t)
	natsServer(t, port, t.TempDir())
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// The stream as the bridge creates it; the reference publishes one message at a time all the same.
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "ACR_EVENTS", Subjects: []string{"acr.>", "eventgrid.>"},
		Duplicates: 10 * time.Minute, MaxAge: 168 * time.Hour, Storage: jetstream.FileStorage, AllowAtomicPublish: true})
	require.NoError(t, err)

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var p *proc
	if which == "bridge" {
		// The bridge's defaults, info logging included: a line per delivery, written to a file as a
		// container's standard output goes to its runtime.
		env := []string{"BRIDGE_LISTEN_ADDR=" + addr, "BRIDGE_NATS_URL=" + natsURL}
		logFile, err := os.Create(filepath.Join(t.TempDir(), "bridge.log"))
		require.NoError(t, err)
		t.Cleanup(func() { logFile.Close() })
		// BENCH_BRIDGE_ENV measures a tuning of the bridge alone, e.g. "GOGC=off GOMEMLIMIT=48MiB" or
		// "BRIDGE_LOG_LEVEL=warn".
		env = append(env, bridgeEnv...)
		p = startTo(t, logFile, append(env, strings.Fields(os.Getenv("BENCH_BRIDGE_ENV"))...), bridgeBin)
	} else {
		bin, format := referenceBin, eventGridFormat
		if which == "cesdk" {
			bin, format = cesdkBin, cloudEventFormat
		}
		p = start(t, []string{"LISTEN_ADDR=" + addr, "NATS_URL=" + natsURL}, bin)
		return warmedUpWith(t, p, addr, format)
	}
	return warmedUp(t, p, addr, warmup)
}

// warmedUp waits until the receiver at addr stores an Event Grid delivery of batch events, and returns it.
func warmedUp(t testing.TB, p *proc, addr string, batch int) receiverProc {
	return warmedUpWith(t, p, addr, func(prefix string, _ int) (string, string) { return eventGridFormat(prefix, batch) })
}

// warmedUpWith waits until the receiver at addr stores a delivery of one event in format.
func warmedUpWith(t testing.TB, p *proc, addr string, format bodyFormat) receiverProc {
	// No keep-alive: the port may belong to another server in the next scenario.
	warmup := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	require.Eventually(t, func() bool {
		ct, body := format("warmup", 1)
		resp, err := warmup.Post("http://"+addr+"/eventgrid", ct, strings.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 20*time.Millisecond, "%s did not serve:\n%s", addr, p.out)
	return receiverProc{p: p, url: "http://" + addr + "/eventgrid"}
}

// batchBody is an Event Grid delivery of n ImagePushed events, ids prefix-first .. prefix-(first+n-1).
func batchBody(prefix string, first, n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := prefix + "-" + strconv.Itoa(first+i)
		fmt.Fprintf(&b, `{"id":%q,"topic":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry",`+
			`"subject":"team/app:v1","eventType":"Microsoft.ContainerRegistry.ImagePushed","eventTime":"2024-05-01T10:00:00.1234567Z",`+
			`"data":{"id":%q,"timestamp":"2024-05-01T10:00:00.1234567Z","action":"push","location":"westus",`+
			`"target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":524,"digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","length":524,"repository":"team/app","tag":"v1"},`+
			`"request":{"id":"r","host":"myregistry.azurecr.io","method":"PUT","useragent":"docker/24.0.7"}},"dataVersion":"1.0","metadataVersion":"1"}`, id, id)
	}
	b.WriteByte(']')
	return b.String()
}

// measure runs one scenario against a receiver for d, deliveries written in format, and returns its figures.
func measure(t testing.TB, r receiverProc, sc scenario, d time.Duration, run int, format bodyFormat) figures {
	transport := &http.Transport{MaxIdleConnsPerHost: sc.conns, MaxConnsPerHost: sc.conns, TLSClientConfig: r.tls}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	cpu0 := cpuSeconds(t, r.p.cmd.Process.Pid)
	var events, failures atomic.Int64
	lat := make([][]time.Duration, sc.conns)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for c := range sc.conns {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				ct, body := format(fmt.Sprintf("r%d-c%d-%d", run, c, i), sc.batch)
				t0 := time.Now()
				resp, err := client.Post(r.url, ct, strings.NewReader(body))
				if err != nil {
					failures.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					continue
				}
				lat[c] = append(lat[c], time.Since(t0))
				events.Add(int64(sc.batch))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuSeconds(t, r.p.cmd.Process.Pid) - cpu0
	require.Zero(t, failures.Load(), "every request answered 200")
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return figures{
		eventsPerSec: float64(events.Load()) / elapsed.Seconds(),
		p50:          q(0.50), p99: q(0.99), p999: q(0.999),
		cpuPer1000: cpu / float64(events.Load()) * 1000,
		rssMiB:     float64(peakRSS(t, r.p.cmd.Process.Pid)) / (1 << 20),
	}
}

// cpuSeconds is the user plus system CPU time of a process so far, from /proc/<pid>/stat.
func cpuSeconds(t testing.TB, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// peakRSS is the high-water mark of a process's resident set (VmHWM).
func peakRSS(t testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// compare measures every scenario on both receivers, runs times each (a fresh NATS and receiver per
// scenario and receiver), and prints the medians and the bridge/reference ratios.
func compare(t testing.TB, scs []scenario, d time.Duration, runs int) {
	contest(t, scs, d, runs, "reference", eventGridFormat)
}

// contest is compare against another receiver, every delivery written in format.
func contest(t testing.TB, scs []scenario, d time.Duration, runs int, other string, format bodyFormat) {
	var out strings.Builder
	fmt.Fprintf(&out, "\n%-30s %-9s %10s %9s %9s %9s %10s %8s\n", "scenario", "receiver", "events/s", "p50", "p99", "p99.9", "CPU s/1k", "RSS MiB")
	for _, sc := range scs {
		// The two receivers take turns, ABBA, so that a slow spell of a shared machine falls on both
		// rather than on whichever ran then.
		fs := map[string][]figures{}
		for run := range runs {
			order := []string{"bridge", other}
			if run%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, which := range order {
				r := startReceiver(t, which)
				fs[which] = append(fs[which], measure(t, r, sc, d, run, format))
				r.p.stop(syscall.SIGTERM)
			}
		}
		med := map[string]figures{}
		for _, which := range []string{"bridge", other} {
			med[which] = median(fs[which])
			f := med[which]
			fmt.Fprintf(&out, "%-30s %-9s %10.0f %9s %9s %9s %10.4f %8.1f\n", sc.name, which, f.eventsPerSec, round(f.p50), round(f.p99), round(f.p999), f.cpuPer1000, f.rssMiB)
		}
		b, r := med["bridge"], med[other]
		fmt.Fprintf(&out, "%-30s %-9s %9.2fx %8.2fx %8.2fx %8.2fx %9.2fx %7.2fx\n", "", "ratio", b.eventsPerSec/r.eventsPerSec,
			ratio(b.p50, r.p50), ratio(b.p99, r.p99), ratio(b.p999, r.p999), b.cpuPer1000/r.cpuPer1000, b.rssMiB/r.rssMiB)
	}
	fmt.Fprintf(&out, "(%s per run, median of %d runs, the receivers taking turns; load generator in the same process as the test, on the same machine)\n", d, runs)
	if _, ok := t.(*testing.B); ok {
		fmt.Print(out.String())
		return
	}
	t.Log(out.String())
}

func round(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// median takes the median of each figure on its own.
func median(fs []figures) figures {
	pick := func(get func(figures) float64) float64 {
		v := make([]float64, len(fs))
		for i, f := range fs {
			v[i] = get(f)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	dur := func(get func(figures) time.Duration) time.Duration {
		return time.Duration(pick(func(f figures) float64 { return float64(get(f)) }))
	}
	return figures{
		eventsPerSec: pick(func(f figures) float64 { return f.eventsPerSec }),
		p50:          dur(func(f figures) time.Duration { return f.p50 }),
		p99:          dur(func(f figures) time.Duration { return f.p99 }),
		p999:         dur(func(f figures) time.Duration { return f.p999 }),
		cpuPer1000:   pick(func(f figures) float64 { return f.cpuPer1000 }),
		rssMiB:       pick(func(f figures) float64 { return f.rssMiB }),
	}
}

// BenchmarkReceivers is the full comparison: go test ./integration -run '^$' -bench Receivers -benchtime 1x
// (one shape: -bench Receivers/single-64).
func BenchmarkReceivers(b *testing.B) {
	for _, sc := range scenarios {
		b.Run(sc.short(), func(b *testing.B) {
			for range b.N {
				compare(b, []scenario{sc}, 5*time.Second, 3)
			}
		})
	}
}

// ceScenarios are the shapes the CloudEvents SDK receiver takes: one event per delivery.
var ceScenarios = []scenario{scenarios[0], scenarios[1]}

// BenchmarkCloudEventsSDK measures the bridge against the receiver a user would write with the CloudEvents
// SDK (StartReceiver) and nats.go, both taking the same structured CloudEvents:
// go test ./integration -run '^$' -bench CloudEventsSDK -benchtime 1x
func BenchmarkCloudEventsSDK(b *testing.B) {
	for _, sc := range ceScenarios {
		b.Run(sc.short(), func(b *testing.B) {
			for range b.N {
				contest(b, []scenario{sc}, 5*time.Second, 3, "cesdk", cloudEventFormat)
			}
		})
	}
}

// TestBenchmarkSmoke runs the comparisons briefly so CI prints figures and the machinery keeps working.
// It asserts only that every request was answered 200, never a timing.
func TestBenchmarkSmoke(t *testing.T) {
	compare(t, scenarios, 500*time.Millisecond, 1)
	contest(t, ceScenarios, 500*time.Millisecond, 1, "cesdk", cloudEventFormat)
	benchLookups(t, []scenario{scenarios[1]}, 300*time.Millisecond, 1, 200)
}
