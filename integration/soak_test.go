package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSoak runs the built bridge (its defaults) under a steady load and prints its RSS and Go heap
// over time, to size a container: the heap of whichever process runs JetStream grows with the events of
// the stream's duplicate window (JetStream keeps each Nats-Msg-Id for that long), levels off once the
// window is full, and drains when the load stops. SOAK_NATS=external runs a nats-server process (syncing
// always) for the bridge to publish to, and prints its RSS too; SOAK_ENV adds settings of the bridge's
// (GOMEMLIMIT=256MiB, as a container's limit would set it).
//
//	SOAK_RATE=1500 SOAK_DURATION=3m SOAK_WINDOW=2m SOAK_DRAIN=1m go test ./integration -run '^$' -bench Soak -benchtime 1x -timeout 30m
func BenchmarkSoak(b *testing.B) {
	rate := envInt("SOAK_RATE", 1000)
	duration := envDuration("SOAK_DURATION", time.Minute)
	window := envDuration("SOAK_WINDOW", 10*time.Minute)
	drain := envDuration("SOAK_DRAIN", 0)
	external := os.Getenv("SOAK_NATS") == "external"
	for range b.N {
		env := append([]string{"BRIDGE_STREAM_DUPLICATE_WINDOW=" + window.String(), "BRIDGE_LOG_LEVEL=warn"}, strings.Fields(os.Getenv("SOAK_ENV"))...)
		var ns *proc
		if external {
			port := freePort(b)
			ns = natsServerSyncAlways(b, port, b.TempDir())
			env = append(env, fmt.Sprintf("BRIDGE_NATS_URL=nats://127.0.0.1:%d", port))
		} else {
			env = append(env, fmt.Sprintf("BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:%d", freePort(b)), "BRIDGE_EMBEDDED_NATS_DIR="+b.TempDir())
		}
		p, url := bridgeProcess(b, env...)
		const batch = 10
		var sent, failed atomic.Int64
		client := &http.Client{Timeout: 30 * time.Second}
		// A steady rate: 20 senders, each posting a batch of 10 on its own tick.
		senders := 20
		interval := time.Duration(float64(time.Second) * float64(senders*batch) / float64(rate))
		stop := make(chan struct{})
		for s := range senders {
			go func() {
				t := time.NewTicker(interval)
				defer t.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-t.C:
					}
					resp, err := client.Post(url+"/eventgrid", "application/json", strings.NewReader(batchBody(fmt.Sprintf("s%d-%d", s, i), 0, batch)))
					if err != nil || resp.StatusCode != http.StatusOK {
						failed.Add(1)
					} else {
						sent.Add(batch)
					}
					if resp != nil {
						resp.Body.Close()
					}
				}
			}()
		}
		start := time.Now()
		where := "embedded NATS"
		if external {
			where = "a nats-server process"
		}
		fmt.Printf("soak: %d events/s for %s, then %s without load; duplicate window %s; %s\n", rate, duration, drain, window, where)
		line := func() {
			el := time.Since(start)
			m := scrape(url, "go_memstats_heap_inuse_bytes", "go_gc_heap_live_bytes")
			fmt.Printf("  %6s  %8d events stored (%5.0f/s)  bridge RSS %6.1f MiB, heap %6.1f MiB (live %6.1f MiB)", el.Round(time.Second), sent.Load(),
				float64(sent.Load())/el.Seconds(), float64(rss(b, p.cmd.Process.Pid))/(1<<20), m[0]/(1<<20), m[1]/(1<<20))
			if ns != nil {
				fmt.Printf("  nats-server RSS %6.1f MiB", float64(rss(b, ns.cmd.Process.Pid))/(1<<20))
			}
			fmt.Printf("  failed %d\n", failed.Load())
		}
		for time.Since(start) < duration {
			time.Sleep(15 * time.Second)
			line()
		}
		close(stop)
		for end := time.Now().Add(drain); time.Now().Before(end); {
			time.Sleep(15 * time.Second)
			line()
		}
	}
}

// scrape reads the values of the bridge's metrics names from its /metrics, 0 for those it lacks.
func scrape(url string, names ...string) []float64 {
	values := make([]float64, len(names))
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return values
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		for i, name := range names {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				values[i], _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
	}
	return values
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
