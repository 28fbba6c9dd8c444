package namespace_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/natsbridge/acr-nats-bridge/namespace/namespacetest"
)

// BenchmarkPull is the puller's throughput from the stand-in namespace into a real nats-server (file
// storage, syncing every write as the embedded server does): events pulled, stored and acknowledged per
// second, with one and two receivers. go test ./namespace -run '^$' -bench Pull -benchtime 20000x
func BenchmarkPull(b *testing.B) {
	for _, receivers := range []int{1, 2} {
		b.Run(fmt.Sprintf("receivers-%d", receivers), func(b *testing.B) {
			r := newRig(b, rigOptions{receivers: receivers, syncAlways: true, namespace: namespacetest.Options{MaxWaitScale: 50}})
			for i := range b.N {
				r.ns.Publish(cePush(fmt.Sprintf("bench-%d", i)))
			}
			b.ResetTimer()
			start := time.Now()
			for len(r.ns.Acknowledged()) < b.N {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			if n := len(r.stored()); n != b.N {
				b.Fatalf("%d events stored, want %d", n, b.N)
			}
		})
	}
}
