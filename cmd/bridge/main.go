// Command bridge receives Azure Event Grid deliveries and Azure Container Registry webhooks and publishes
// every event to NATS JetStream. With no BRIDGE_NATS_URL it starts an embedded NATS server.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/internal/gcpolicy"
	"github.com/natsbridge/acr-nats-bridge/tracing"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(1)
	}
}

const usageHead = `bridge: Azure Event Grid and Azure Container Registry webhooks to NATS JetStream.

Usage:
  bridge             run the bridge (configured by the environment, below)
  bridge tail [-h]   print the events arriving in NATS, one line each
  bridge send [-h]   post sample ACR events to a bridge, as ACR or Event Grid would
  bridge healthcheck [URL]
                     exit 0 if the bridge's /readyz (default on BRIDGE_LISTEN_ADDR) answers 200
  bridge -h          this help

Settings (environment variables):

`

// run is the whole program; tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usageHead)
			return config.Usage(stdout)
		case "tail":
			return runTail(ctx, args[1:], stdout, stderr)
		case "send":
			return runSend(ctx, args[1:], stdout, stderr)
		case "healthcheck":
			return runHealthcheck(ctx, args[1:], stdout)
		default:
			return fmt.Errorf("unknown argument %q (bridge -h lists the settings)", args[0])
		}
	}
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	out := newLogWriter(stdout)
	defer out.Close()
	log := newLogger(cfg, out)
	gc, err := gcpolicy.Set(os.LookupEnv)
	if err != nil {
		log.Warn("garbage collector: the memory limit is left unset", "error", err)
	}
	log.Info("garbage collector", "gogc", gc.GOGC, "gogc_from", gc.GOGCFrom,
		"memory_limit", memoryLimitText(gc.MemoryLimit), "memory_limit_from", gc.LimitFrom)
	return serve(ctx, cfg, log)
}

// newLogger builds the one logger of the process. Secrets are never logged on purpose; as a second
// line of defence, any configured secret that turns up in a logged string (an error quoting a URL, say)
// is replaced.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel()
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redact(secretsOf(cfg))}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve builds the component graph in order (NATS, publisher, HTTP server), serves until ctx ends, then
// shuts down in reverse: stop accepting, finish in-flight requests and their acks, drain NATS.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	conn, err := connectNATS(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer conn.close(log)

	pathOpts := bridge.PathOptions{
		Subjects:        bridge.Subjects{Prefix: cfg.SubjectPrefix, Passthrough: cfg.PassthroughPrefix},
		DefaultRegistry: cfg.DefaultRegistry,
		Mode:            bridge.Mode(cfg.CEMode),
		Passthrough:     cfg.Passthrough,
	}
	opts := bridge.Options{
		AllowedOrigins:   cloudevents.Origins(cfg.AllowedOrigins),
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxEvents:        cfg.MaxEvents,
		MaxInflight:      cfg.MaxInflight,
		MaxInflightBytes: cfg.MaxInflightBytes,
		RetryAfter:       cfg.RetryAfter,
		MaxJSONDepth:     cfg.MaxJSONDepth,
	}
	opts.Auth, err = authOf(ctx, cfg, log)
	if err != nil {
		return err
	}
	reg := newRegistry(conn.nc)
	pathOpts.Metrics = bridge.NewMetrics(reg)
	tp, shutdownTracing, err := tracing.Setup(ctx, tracing.DefaultServiceName)
	if err != nil {
		return err
	}
	defer func() {
		// Once the HTTP server has stopped, so that the spans of the last deliveries are flushed too.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flushing spans", "error", err.Error())
		}
	}()
	if tracing.Enabled(tp) {
		pathOpts.Tracer = tp.Tracer("github.com/natsbridge/acr-nats-bridge")
		log.Info("tracing with OpenTelemetry", "exporter", os.Getenv("OTEL_TRACES_EXPORTER"), "service_name", envOr("OTEL_SERVICE_NAME", tracing.DefaultServiceName))
	}
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if cfg.MetricsAddr == "" {
		opts.MetricsHandler = metricsHandler
	} else {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, metricsHandler, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	var path *bridge.Path
	if cfg.NATSMode == "core" {
		log.Info("publishing with core NATS: no stream, no acks, no de-duplication")
		path = bridge.NewPath(pathOpts, bridge.NewCore(conn.nc, cfg.PublishTimeout), log)
	} else {
		storage := jetstream.FileStorage
		if cfg.StreamStorage == "memory" {
			storage = jetstream.MemoryStorage
		}
		js, err := bridge.NewJetStream(conn.nc, bridge.StreamConfig{
			Name:          cfg.Stream,
			Subjects:      []string{cfg.SubjectPrefix + ".>", cfg.PassthroughPrefix + ".>"},
			Create:        cfg.StreamCreate,
			Duplicates:    cfg.StreamDuplicateWindow,
			MaxAge:        cfg.StreamMaxAge,
			Replicas:      cfg.StreamReplicas,
			Storage:       storage,
			AtomicBatches: bridge.BatchPolicy(cfg.AtomicBatchPolicy()),
		}, cfg.PublishTimeout, max(4096, 2*cfg.MaxEvents), pathOpts.Metrics, log)
		if err != nil {
			return err
		}
		// After the HTTP server's shutdown, which waits for the requests whose batches they commit.
		defer js.Close()
		ensureCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := js.EnsureStream(ensureCtx); err != nil {
			// Not fatal: NATS may come up later, and until the stream answers the bridge says 503.
			log.Error("stream not available; deliveries get 503 until it is", "stream", cfg.Stream, "error", err)
		}
		cancel()
		path = bridge.NewPath(pathOpts, js, log)
	}
	handler := bridge.NewServer(opts, path, log)
	stopPulling := func() {}
	if cfg.NamespaceEnabled() {
		puller, err := newPuller(cfg, path, reg, log)
		if err != nil {
			return err
		}
		handler.AddReadyCheck(puller.Ready)
		pullCtx, cancel := context.WithCancel(ctx)
		pulled := make(chan struct{})
		go func() { puller.Run(pullCtx); close(pulled) }()
		// Receiving stops first; what was received is settled before NATS is drained.
		stopPulling = func() { cancel(); <-pulled }
		defer stopPulling()
	}

	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	certs, err := newCertificates(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (BRIDGE_LISTEN_ADDR): %w", cfg.ListenAddr, err)
	}
	scheme := "http"
	if certs != nil {
		scheme = "https"
		srv.TLSConfig = certs.config
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	log.Info("bridge listening", "addr", ln.Addr().String(), "scheme", scheme, "nats", conn.url, "mode", cfg.NATSMode,
		"stream", cfg.Stream, "subject_prefix", cfg.SubjectPrefix, "ce_mode", cfg.CEMode)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if certs != nil && certs.start != nil {
		// After the listener, which answers the CA's TLS-ALPN-01 challenges.
		go certs.start(ctx)
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	stopPulling()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// memoryLimitText is a GOMEMLIMIT for a log line: MiB, or none.
func memoryLimitText(limit int64) string {
	if limit == math.MaxInt64 {
		return "none"
	}
	return strconv.FormatInt(limit>>20, 10) + "MiB"
}
