package integration

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSoak runs the built bridge (embedded NATS, its defaults) under a steady load and prints its RSS
// over time, to size a container: the live heap grows with the events of the stream's duplicate window
// (JetStream keeps each Nats-Msg-Id for that long) and drains when the load stops.
//
//	SOAK_RATE=1500 SOAK_DURATION=3m SOAK_WINDOW=2m go test ./integration -run '^$' -bench Soak -benchtime 1x -timeout 30m
func BenchmarkSoak(b *testing.B) {
	rate := envInt("SOAK_RATE", 1000)
	duration := envDuration("SOAK_DURATION", time.Minute)
	window := envDuration("SOAK_WINDOW", 10*time.Minute)
	for range b.N {
		natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
		p, url := bridgeProcess(b, "BRIDGE_EMBEDDED_NATS_ADDR="+natsAddr, "BRIDGE_EMBEDDED_NATS_DIR="+b.TempDir(),
			"BRIDGE_STREAM_DUPLICATE_WINDOW="+window.String(), "BRIDGE_LOG_LEVEL=warn")
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
		fmt.Printf("soak: %d events/s for %s, duplicate window %s\n", rate, duration, window)
		for time.Since(start) < duration {
			time.Sleep(15 * time.Second)
			el := time.Since(start)
			fmt.Printf("  %6s  %8d events stored (%5.0f/s)  RSS %6.1f MiB  failed %d\n", el.Round(time.Second), sent.Load(),
				float64(sent.Load())/el.Seconds(), float64(rss(b, p.cmd.Process.Pid))/(1<<20), failed.Load())
		}
		close(stop)
	}
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
