package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/redrive"
)

const redriveUsage = `Usage:
  bridge redrive blobs --container URL [--prefix P] [--since T] [--until T] [--dry-run]
      bring back the events Event Grid dead-lettered to Azure Blob Storage
  bridge redrive deadletters [--subject SUBJECT] [--dry-run]
      publish the bridge's own dead letters that the current version normalises

Both publish to BRIDGE_NATS_URL (default nats://127.0.0.1:4222, the embedded server of a bridge running
beside it) with the bridge's BRIDGE_* subject and stream settings, each event taking the path of a
pushed one.
`

// runRedrive runs `bridge redrive blobs` or `bridge redrive deadletters`.
func runRedrive(ctx context.Context, args []string, getenv environment, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, redriveUsage)
		if len(args) == 0 {
			return errors.New("redrive: say what to redrive: blobs or deadletters")
		}
		return nil
	}
	switch args[0] {
	case "blobs":
		return redriveBlobs(ctx, args[1:], getenv, stdout, stderr)
	case "deadletters":
		return redriveDeadLetters(ctx, args[1:], getenv, stdout, stderr)
	}
	fmt.Fprint(stderr, redriveUsage)
	return fmt.Errorf("redrive: unknown %q: blobs or deadletters", args[0])
}

// redriveSetup is what both redrives share: the configuration, a logger, and the delivery path on NATS.
type redriveSetup struct {
	cfg  config.Config
	log  *slog.Logger
	nc   *nats.Conn
	path *bridge.Path
	stop func()
}

func newRedriveSetup(ctx context.Context, getenv environment, stderr io.Writer, dryRun bool) (*redriveSetup, error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if cfg.NATSURL == "" {
		// The embedded server of a bridge running beside it, which syncs every write unless told not to:
		// a blob's events go as one atomic batch, one sync.
		if cfg.AtomicBatchPolicy() == string(bridge.BatchesAlways) {
			cfg.AtomicBatches = "true"
		}
		cfg.NATSURL = "nats://127.0.0.1:4222"
	}
	// The logger writes warnings and errors only: the progress and the summary are the output.
	if cfg.LogLevel == "info" {
		cfg.LogLevel = "warn"
	}
	cfg.LogFormat = "text"
	s := &redriveSetup{cfg: cfg, log: newLogger(cfg, stderr), stop: func() {}}
	if dryRun {
		return s, nil
	}
	// No retry of the first connection: an unreachable NATS is an error now, not a wait.
	nc, err := nats.Connect(cfg.NATSURL, natsOptions(cfg, s.log)...)
	if err != nil {
		return nil, fmt.Errorf("NATS %s (BRIDGE_NATS_URL): %w", redactURL(cfg.NATSURL), err)
	}
	registry, err := newLookups(cfg, getenv, prometheus.NewRegistry(), s.log)
	if err != nil {
		nc.Close()
		return nil, err
	}
	path, closePublisher, err := newPath(ctx, cfg, &natsConn{nc: nc, url: redactURL(cfg.NATSURL)}, bridge.NewMetrics(prometheus.NewRegistry()), nil, registry, s.log)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if err := path.CanStore(ctx); err != nil {
		closePublisher()
		nc.Close()
		return nil, fmt.Errorf("NATS %s cannot store events: %w", redactURL(cfg.NATSURL), err)
	}
	s.nc, s.path = nc, path
	s.stop = func() {
		closePublisher()
		_ = nc.Drain()
	}
	return s, nil
}

func (s *redriveSetup) options() redrive.Options {
	return redrive.Options{
		Decoder:      cloudevents.Decoder{MaxDepth: s.cfg.MaxJSONDepth, MaxEvents: max(s.cfg.MaxEvents, 5000)},
		Normalizer:   bridge.Normalizer{DefaultRegistry: s.cfg.DefaultRegistry},
		MaxBlobBytes: 256 << 20,
	}
}

func redriveBlobs(ctx context.Context, args []string, getenv environment, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("redrive blobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	containerRef := fs.String("container", "", "the dead-letter container: its URL (with a SAS query, the SAS is the credential), or with AZURE_STORAGE_CONNECTION_STRING a URL or a container name")
	prefix := fs.String("prefix", "", "only blobs whose names start with this (a subscription's folder)")
	since := fs.String("since", "", "only blobs of this hour or later, by their path: RFC 3339 or a date")
	until := fs.String("until", "", "only blobs of this hour or earlier, by their path: RFC 3339 or a date (the whole day)")
	dryRun := fs.Bool("dry-run", false, "read and count the events by type and dead-letter reason; publish and mark nothing, need no NATS")
	workers := fs.Int("workers", 16, "blobs redriven at once")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: bridge redrive blobs --container URL [--prefix P] [--since T] [--until T] [--dry-run]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *containerRef == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("redrive blobs: --container is required, and nothing else")
	}
	var window redrive.Window
	var err error
	if *since != "" {
		if window.Since, err = redrive.ParseTime(*since, false); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	if *until != "" {
		if window.Until, err = redrive.ParseTime(*until, true); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	if *workers < 1 || *workers > 256 {
		return fmt.Errorf("--workers must be 1 to 256, got %d", *workers)
	}
	connStr, _ := getenv("AZURE_STORAGE_CONNECTION_STRING")
	c, err := redrive.Open(*containerRef, redrive.Credentials{ConnectionString: connStr, TokenCredential: func() (azcore.TokenCredential, error) {
		return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			DisableInstanceDiscovery: privateAuthority(getenv.or("AZURE_AUTHORITY_HOST", "")),
		})
	}}, !*dryRun, time.Now())
	if err != nil {
		return err
	}
	s, err := newRedriveSetup(ctx, getenv, stderr, *dryRun)
	if err != nil {
		return err
	}
	defer s.stop()
	opts := s.options()
	opts.Prefix, opts.Window, opts.DryRun, opts.Workers = *prefix, window, *dryRun, *workers
	p := newProgress(stderr, "blobs")
	opts.Progress = func(sum redrive.Summary) { p.update(sum.Blobs, sum.Events, sum.Stored+sum.Duplicates+sum.DeadLettered) }
	var d redrive.Deliverer
	if s.path != nil {
		d = s.path
	}
	sum, err := redrive.Blobs(ctx, c, d, opts, s.log)
	p.done()
	if *dryRun {
		fmt.Fprintf(stdout, "dry run of %s: %d events in %d blobs (%d done before, %d outside the window); nothing published, nothing marked\n%s",
			c.Name(), sum.Events, sum.Blobs, sum.Done, sum.Outside, sum.Breakdown())
	} else {
		fmt.Fprintf(stdout, "redrive of %s: %s\n", c.Name(), sum)
	}
	if err != nil {
		return fmt.Errorf("redrive stopped: %w", err)
	}
	return nil
}

func redriveDeadLetters(ctx context.Context, args []string, getenv environment, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("redrive deadletters", flag.ContinueOnError)
	fs.SetOutput(stderr)
	subject := fs.String("subject", getenv.or("BRIDGE_SUBJECT_PREFIX", "acr")+".deadletter", "the dead-letter subject")
	dryRun := fs.Bool("dry-run", false, "count what would be redriven and what stays; publish and delete nothing")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: bridge redrive deadletters [--subject SUBJECT] [--dry-run]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("redrive deadletters: unexpected %q", fs.Arg(0))
	}
	// The dead letters are in NATS, so a dry run reads them too; it publishes and deletes nothing.
	s, err := newRedriveSetup(ctx, getenv, stderr, false)
	if err != nil {
		return err
	}
	defer s.stop()
	js, err := jetstream.New(s.nc)
	if err != nil {
		return err
	}
	opts := s.options()
	opts.DryRun = *dryRun
	p := newProgress(stderr, "dead letters")
	opts.Progress = func(sum redrive.Summary) { p.update(sum.Events, sum.Events, sum.Stored) }
	sum, err := redrive.DeadLetters(ctx, js, s.cfg.Stream, *subject, s.path, opts, s.log)
	p.done()
	verb := "redrive"
	if *dryRun {
		verb = "dry run"
	}
	fmt.Fprintf(stdout, "%s of %s in %s: %s\n", verb, *subject, s.cfg.Stream, sum)
	for reason, n := range sum.ByReason {
		fmt.Fprintf(stdout, "  %6d stay: %s\n", n, reason)
	}
	if err != nil {
		return fmt.Errorf("redrive stopped: %w", err)
	}
	return nil
}

// progress shows how far a redrive is: a progress bar on a terminal, else a line every few seconds.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	what    string
	bar     *progressbar.ProgressBar
	last    time.Time
	n, e, s int
}

func newProgress(w io.Writer, what string) *progress {
	p := &progress{w: w, what: what, last: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionSpinnerType(14), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish())
	}
	return p
}

// update records n items (blobs or dead letters) and e events read, s of them stored.
func (p *progress) update(n, e, s int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n, p.e, p.s = n, e, s
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("%s: %d events read, %d stored", p.what, e, s))
		_ = p.bar.Set(n)
		return
	}
	if time.Since(p.last) >= 2*time.Second {
		p.last = time.Now()
		fmt.Fprintf(p.w, "redrive: %d %s, %d events read, %d stored\n", n, p.what, e, s)
	}
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
