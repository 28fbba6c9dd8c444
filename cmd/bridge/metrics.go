package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/natsbridge/acr-nats-bridge/bridge"
)

// newRegistry returns the process's metrics registry with the Go runtime, the process, and the state
// of the NATS connection; the bridge's own metrics are added by bridge.NewMetrics.
func newRegistry(nc *nats.Conn) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		// The GC's runtime metrics besides the defaults: go_gc_heap_live_bytes is the heap the last
		// collection kept, what memory must be sized for (docs/operations.md, "Memory").
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsGC)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bridge_nats_connected",
			Help: "1 while the NATS connection is up, 0 while it is down or reconnecting.",
		}, func() float64 {
			if bridge.Connected(nc) { // the handlers' word: no wait on the connection's lock
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bridge_nats_reconnects_total",
			Help: "Times the NATS connection was re-established.",
		}, func() float64 { return float64(bridge.Reconnects(nc)) }),
	)
	return reg
}

// serveMetrics serves GET /metrics on a listener of its own (BRIDGE_METRICS_ADDR) and returns a
// function that stops it.
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return serveAside("metrics", "BRIDGE_METRICS_ADDR", addr, mux, 30*time.Second, log)
}

// servePprof serves Go's profiles on a listener of its own (BRIDGE_PPROF_ADDR). A CPU profile takes
// as long as it is asked to, so the write timeout is long.
func servePprof(addr string, log *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveAside("pprof", "BRIDGE_PPROF_ADDR", addr, mux, 5*time.Minute, log)
}

// serveAside serves h on a listener of its own beside the receiver's, and returns a function that stops it.
func serveAside(what, variable, addr string, h http.Handler, writeTimeout time.Duration, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", addr, variable, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: writeTimeout}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" listener stopped", "error", err)
		}
	}()
	log.Info(what+" listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
