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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/internal/gcpolicy"
	"github.com/natsbridge/acr-nats-bridge/tracing"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(1)
	}
}

const usageHead = `bridge: Azure Event Grid and Azure Container Registry webhooks to NATS JetStream.

Usage:
  bridge             run the bridge (configured by the environment, below)
  bridge tail [-h]   print the events arriving in NATS, one line each
  bridge send [-h]   post sample ACR events to a bridge, as ACR or Event Grid would
  bridge redrive blobs|deadletters [-h]
                     bring back what Event Grid dead-lettered to Blob Storage, or the bridge's own dead
                     letters that this version normalises
  bridge healthcheck [URL]
                     exit 0 if the bridge's /readyz (default on BRIDGE_LISTEN_ADDR) answers 200
  bridge -h          this help

Settings (environment variables):

`

// run is the whole program; tests call it. getenv reads the environment, as os.LookupEnv does: the
// bridge's settings and the few other variables it reads itself (the Azure and OpenTelemetry SDKs read
// theirs from the process).
func run(ctx context.Context, args []string, getenv environment, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usageHead)
			return config.Usage(stdout)
		case "tail":
			return runTail(ctx, args[1:], getenv, stdout, stderr)
		case "send":
			return runSend(ctx, args[1:], getenv, stdout, stderr)
		case "healthcheck":
			return runHealthcheck(ctx, args[1:], getenv, stdout)
		case "redrive":
			return runRedrive(ctx, args[1:], getenv, stdout, stderr)
		default:
			return fmt.Errorf("unknown argument %q (bridge -h lists the settings)", args[0])
		}
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	var loopbackOnly bool
	cfg.ListenAddr, loopbackOnly = listenAddr(cfg, getenv)
	out := newLogWriter(stdout)
	defer out.Close()
	log := newLogger(cfg, out)
	for _, w := range config.UnknownVariables(environNames()) {
		log.Warn(w)
	}
	if loopbackOnly {
		log.Warn("no authentication configured: listening on this machine only (" + cfg.ListenAddr + "); set BRIDGE_AUTH_TOKENS or BRIDGE_ENTRA_TENANT_ID and BRIDGE_ENTRA_AUDIENCE, or BRIDGE_LISTEN_ADDR explicitly, to take deliveries from elsewhere")
	}
	gc, err := gcpolicy.Set(getenv)
	if err != nil {
		log.Warn("garbage collector: the memory limit is left unset", "error", err)
	}
	log.Info("garbage collector", "gogc", gc.GOGC, "gogc_from", gc.GOGCFrom,
		"memory_limit", memoryLimitText(gc.MemoryLimit), "memory_limit_from", gc.LimitFrom)
	return serve(ctx, cfg, getenv, log)
}

// listenAddr is where the receiver listens: BRIDGE_LISTEN_ADDR when it is set, or when POSTs must
// authenticate; otherwise (nobody said where, and nothing authenticates a POST) its port on 127.0.0.1 only.
func listenAddr(cfg config.Config, getenv environment) (addr string, loopbackOnly bool) {
	if _, explicit := getenv("BRIDGE_LISTEN_ADDR"); explicit || cfg.AuthEnabled() {
		return cfg.ListenAddr, false
	}
	_, port, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return cfg.ListenAddr, false // validation refuses it before this
	}
	return net.JoinHostPort("127.0.0.1", port), true
}

// authName names how POSTs authenticate, for the start-up line.
func authName(cfg config.Config) string {
	switch {
	case len(cfg.AuthTokens) > 0 && cfg.EntraEnabled():
		return "tokens, Entra ID"
	case len(cfg.AuthTokens) > 0:
		return "tokens"
	case cfg.EntraEnabled():
		return "Entra ID"
	}
	return "none"
}

// environNames are the names of the process's environment variables, for the warning about BRIDGE_*
// names that are no setting.
var environNames = func() []string {
	var names []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	return names
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

// serve builds the component graph in order, serves until ctx ends, then shuts down in reverse: stop
// receiving by pull, stop accepting, finish in-flight requests and their acks, stop what runs beside the
// listener, close the publisher, flush spans, drain NATS. Each step returns what undoes it.
func serve(ctx context.Context, cfg config.Config, getenv environment, log *slog.Logger) error {
	conn, err := connectNATS(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer conn.close(log)
	reg := newRegistry(conn.nc)
	metrics := bridge.NewMetrics(reg)
	tracer, stopTracing, err := startTracing(ctx, getenv, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	registry, err := newLookups(cfg, getenv, reg, log)
	if err != nil {
		return err
	}
	path, closePublisher, err := newPath(ctx, cfg, conn, metrics, tracer, registry, log)
	if err != nil {
		return err
	}
	// After the HTTP server's shutdown, which waits for the requests whose batches it commits.
	defer closePublisher()
	handler, stopAside, err := newHandler(ctx, cfg, path, reg, log)
	if err != nil {
		return err
	}
	defer stopAside()
	stopPulling, err := startPulling(ctx, cfg, getenv, path, handler, reg, log)
	if err != nil {
		return err
	}
	// Receiving stops first; what was received is settled before NATS is drained.
	defer stopPulling()
	return serveHTTP(ctx, cfg, handler, conn.url, stopPulling, log)
}

// startTracing sets OpenTelemetry up from the OTEL_* variables; the tracer is nil when tracing is off.
// stop flushes the spans, once the HTTP server has stopped, so that those of the last deliveries go too.
func startTracing(ctx context.Context, getenv environment, log *slog.Logger) (tracer trace.Tracer, stop func(), err error) {
	tp, shutdown, err := tracing.Setup(ctx, tracing.DefaultServiceName)
	if err != nil {
		return nil, nil, err
	}
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("flushing spans", "error", err.Error())
		}
	}
	if tracing.Enabled(tp) {
		tracer = tp.Tracer("github.com/natsbridge/acr-nats-bridge")
		log.Info("tracing with OpenTelemetry", "exporter", getenv.or("OTEL_TRACES_EXPORTER", ""), "service_name", getenv.or("OTEL_SERVICE_NAME", tracing.DefaultServiceName))
	}
	return tracer, stop, nil
}

// newPath builds the delivery path over a publisher: core NATS, or JetStream with its stream ensured (a
// stream not there yet is logged, not fatal: deliveries get 503 until it is). closePublisher stops the
// committers of atomic batches.
func newPath(ctx context.Context, cfg config.Config, conn *natsConn, metrics *bridge.Metrics, tracer trace.Tracer, registry bridge.Registry, log *slog.Logger) (path *bridge.Path, closePublisher func(), err error) {
	opts := bridge.PathOptions{
		Subjects:        bridge.Subjects{Prefix: cfg.SubjectPrefix, Passthrough: cfg.PassthroughPrefix},
		DefaultRegistry: cfg.DefaultRegistry,
		Mode:            bridge.Mode(cfg.CEMode),
		Passthrough:     cfg.Passthrough,
		Metrics:         metrics,
		Tracer:          tracer,
		Registry:        registry,
		LookupRequired:  cfg.RegistryLookup == "required",
	}
	if cfg.NATSMode == "core" {
		log.Info("publishing with core NATS: no stream, no acks, no de-duplication")
		return bridge.NewPath(opts, bridge.NewCore(conn.nc, cfg.PublishTimeout), log), func() {}, nil
	}
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
	}, cfg.PublishTimeout, max(4096, 2*cfg.MaxEvents), metrics, log)
	if err != nil {
		return nil, nil, err
	}
	ensureCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := js.EnsureStream(ensureCtx); err != nil {
		log.Error("stream not available; deliveries get 503 until it is", "stream", cfg.Stream, "error", err)
	}
	if e := conn.embedded; e != nil {
		// A store that refuses writes answers 503 at once, and /readyz says why.
		js.WatchStore(e)
	}
	return bridge.NewPath(opts, js, log), js.Close, nil
}

// newHandler builds the HTTP server's handler: authentication, limits, and /metrics on it or on a
// listener of its own; pprof's listener when asked for. stopAside stops those other listeners.
func newHandler(ctx context.Context, cfg config.Config, path *bridge.Path, reg *prometheus.Registry, log *slog.Logger) (handler *bridge.Server, stopAside func(), err error) {
	opts := bridge.Options{
		AllowedOrigins:   cloudevents.Origins(cfg.AllowedOrigins),
		MaxBodyBytes:     cfg.MaxBodyBytes,
		MaxEvents:        cfg.MaxEvents,
		MaxInflight:      cfg.MaxInflight,
		MaxInflightBytes: cfg.MaxInflightBytes,
		RetryAfter:       cfg.RetryAfter,
		MaxJSONDepth:     cfg.MaxJSONDepth,
	}
	if opts.Auth, err = authOf(ctx, cfg, log); err != nil {
		return nil, nil, err
	}
	var stops []func()
	stopAside = func() {
		for _, stop := range slices.Backward(stops) {
			stop()
		}
	}
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if cfg.MetricsAddr == "" {
		opts.MetricsHandler = metricsHandler
	} else {
		stop, err := serveMetrics(cfg.MetricsAddr, metricsHandler, log)
		if err != nil {
			return nil, nil, err
		}
		stops = append(stops, stop)
	}
	if cfg.PprofAddr != "" {
		stop, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			stopAside()
			return nil, nil, err
		}
		stops = append(stops, stop)
	}
	return bridge.NewServer(opts, path, log), stopAside, nil
}

// startPulling starts receiving from the Event Grid namespace when one is configured; stop cancels the
// receive calls and returns once every received event is settled. It may be called more than once.
func startPulling(ctx context.Context, cfg config.Config, getenv environment, path *bridge.Path, handler *bridge.Server, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	if !cfg.NamespaceEnabled() {
		return func() {}, nil
	}
	puller, err := newPuller(cfg, getenv, path, handler, reg, log)
	if err != nil {
		return nil, err
	}
	// Its health is /readyz/pull's, not /readyz's: a namespace fault must not take pushed deliveries out
	// of the Service.
	handler.SetPullCheck(puller.Ready)
	pullCtx, cancel := context.WithCancel(ctx)
	pulled := make(chan struct{})
	go func() { puller.Run(pullCtx); close(pulled) }()
	return func() { cancel(); <-pulled }, nil
}

// serveHTTP listens (HTTPS when certificates are configured) and serves handler until ctx ends, then
// stops pulling, stops accepting and finishes the requests under way, and waits for what ran beside the
// listener (the certificate files' watch, the ACME requests).
func serveHTTP(ctx context.Context, cfg config.Config, handler http.Handler, natsURL string, stopPulling func(), log *slog.Logger) error {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	certs, err := newCertificates(cfg, log)
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
	log.Info("bridge listening", "addr", ln.Addr().String(), "scheme", scheme, "authentication", authName(cfg), "nats", natsURL, "mode", cfg.NATSMode,
		"stream", cfg.Stream, "subject_prefix", cfg.SubjectPrefix, "ce_mode", cfg.CEMode)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	var beside sync.WaitGroup
	besideCtx, stopBeside := context.WithCancel(ctx)
	defer stopBeside()
	if certs != nil && certs.start != nil {
		// After the listener, which answers the CA's TLS-ALPN-01 challenges.
		beside.Go(func() { certs.start(besideCtx) })
	}

	select {
	case err := <-serveErr:
		stopBeside()
		beside.Wait()
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	stopPulling()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if err != nil {
		err = fmt.Errorf("http shutdown: %w", err)
	} else if serr := <-serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = fmt.Errorf("http server: %w", serr)
	}
	stopBeside()
	waitFor(shutdownCtx, &beside, log)
	return err
}

// waitFor waits for wg's goroutines, or logs that they are still running when ctx ends first (an ACME
// request holds its own timeout, which ctx cannot shorten).
func waitFor(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("exiting with a request to the ACME CA still under way")
	}
}

// memoryLimitText is a GOMEMLIMIT for a log line: MiB, or none.
func memoryLimitText(limit int64) string {
	if limit == math.MaxInt64 {
		return "none"
	}
	return strconv.FormatInt(limit>>20, 10) + "MiB"
}
