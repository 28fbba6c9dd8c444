package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/config"
)

// natsConn is the bridge's NATS connection and, when it runs one, its embedded server.
type natsConn struct {
	nc       *nats.Conn
	embedded *embedded
	url      string
	// lock holds the embedded server's store directory while it runs.
	lock *os.File
}

// connectNATS connects to BRIDGE_NATS_URL, or starts an embedded server when it is empty.
func connectNATS(ctx context.Context, cfg config.Config, log *slog.Logger) (*natsConn, error) {
	if cfg.NATSURL == "" {
		return startEmbedded(cfg, log)
	}
	opts := append(natsOptions(cfg, log),
		// Start even while NATS is down: /readyz and 503s say so until it is back, and the bridge recovers
		// without a restart.
		nats.RetryOnFailedConnect(true))
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS %s (BRIDGE_NATS_URL): %w", redactURL(cfg.NATSURL), err)
	}
	if !nc.IsConnected() {
		log.Warn("NATS not reachable yet; retrying in the background", "url", redactURL(cfg.NATSURL))
	}
	return &natsConn{nc: nc, url: redactURL(cfg.NATSURL)}, nil
}

// natsOptions are the options of a connection to BRIDGE_NATS_URL: its credentials and TLS, and reconnecting
// forever, backing off.
func natsOptions(cfg config.Config, log *slog.Logger) []nats.Option {
	opts := []nats.Option{
		nats.Name("acr-nats-bridge"),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(backoff),
		// No reconnect buffer: a publish while disconnected fails at once and the sender gets its 503
		// now, rather than an ack that may never come.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) {
			bridge.MarkConnected(nc)
			log.Info("NATS connected", "url", nc.ConnectedUrlRedacted())
		}),
		// A server that stops reading (stalled, its host paused) is declared down well inside the publish
		// timeout: a write blocked longer than a fifth of it, or two pings unanswered at that interval,
		// drop the connection, and the requests waiting on it are answered 503 in time.
		nats.FlusherTimeout(max(cfg.PublishTimeout/5, 500*time.Millisecond)),
		nats.PingInterval(max(cfg.PublishTimeout/5, time.Second)),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil {
				return // a close we asked for; ClosedHandler says so
			}
			log.Warn("NATS disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("NATS error", "error", err) }),
	}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	if cfg.NATSUser != "" {
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword))
	}
	if cfg.NATSToken != "" {
		opts = append(opts, nats.Token(cfg.NATSToken))
	}
	if cfg.NATSTLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSTLSCA))
	}
	if cfg.NATSTLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSTLSCert, cfg.NATSTLSKey))
	}
	return opts
}

// backoff waits 100 ms, doubling to 5 s, with jitter so that many replicas do not reconnect in step.
func backoff(attempts int) time.Duration {
	d := 100 * time.Millisecond << min(attempts, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// startEmbedded starts nats-server with JetStream in this process, listening on BRIDGE_EMBEDDED_NATS_ADDR
// so that the nats CLI and other services can subscribe, and connects to it in-process.
func startEmbedded(cfg config.Config, log *slog.Logger) (*natsConn, error) {
	host, _, _ := net.SplitHostPort(cfg.EmbeddedNATSAddr)
	port, _ := cfg.EmbeddedNATSPort()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	dir, err := filepath.Abs(cfg.EmbeddedNATSDir)
	if err != nil {
		return nil, fmt.Errorf("BRIDGE_EMBEDDED_NATS_DIR: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("BRIDGE_EMBEDDED_NATS_DIR: %w", err)
	}
	// One process at a time: two servers writing one JetStream store would corrupt it.
	lock, err := lockStore(dir)
	if err != nil {
		return nil, err
	}
	// A port in use is an error now, not after the server's start-up wait.
	if port != server.RANDOM_PORT {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("embedded NATS cannot listen on %s (BRIDGE_EMBEDDED_NATS_ADDR): %w; is another bridge or nats-server running? Set BRIDGE_EMBEDDED_NATS_ADDR to another port, or BRIDGE_NATS_URL to use that server", cfg.EmbeddedNATSAddr, err)
		}
		l.Close()
	}
	// The embedded server is the only copy of what it stores, so by default it syncs every write before
	// the PubAck that lets the bridge answer 200; NATS's own default syncs every two minutes, and a power
	// cut in between would lose events that Event Grid already counts as delivered.
	syncEvery, _ := cfg.EmbeddedNATSSyncInterval()
	sync := "always: every write is on disk before its PubAck"
	if syncEvery > 0 {
		sync = "every " + syncEvery.String() + ": a power cut loses up to that much acknowledged data"
	}
	limit, err := cfg.EmbeddedNATSStoreLimit()
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("BRIDGE_EMBEDDED_NATS_MAX_STORE: %w", err)
	}
	e, err := startEmbeddedServer(server.Options{
		ServerName:   "acr-nats-bridge-embedded",
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     dir,
		MaxPayload:   cfg.EmbeddedNATSMaxPayload,
		SyncAlways:   syncEvery == 0,
		SyncInterval: syncEvery,
		NoSigs:       true,
	}, limit, cfg.EmbeddedNATSMaxStore, log)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded NATS did not start on %s (BRIDGE_EMBEDDED_NATS_ADDR): %w", cfg.EmbeddedNATSAddr, err)
	}
	url := e.server().ClientURL()
	nc, err := nats.Connect(url, nats.Name("acr-nats-bridge"), nats.InProcessServer(e),
		// The server restarts in place when its store met a write error and the disk has room again:
		// the connection follows it at once, and a publish meanwhile fails at once.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("embedded NATS disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("embedded NATS reconnected") }),
	)
	if err != nil {
		e.shutdown()
		lock.Close()
		return nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	log.Info("embedded NATS server started", "url", url, "store_dir", dir, "sync", sync, "max_store", units.BytesSize(float64(e.maxStore())),
		"max_payload", cfg.EmbeddedNATSMaxPayload, "hint", "subscribe with: nats --server "+url+" sub '"+cfg.SubjectPrefix+".>'")
	return &natsConn{nc: nc, embedded: e, url: url, lock: lock}, nil
}

// lockStore takes the store directory's lock file for this process, or says which process holds it. The
// lock is the kernel's (flock), so a process that dies releases it.
func lockStore(dir string) (*os.File, error) {
	path := filepath.Join(dir, "bridge.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("BRIDGE_EMBEDDED_NATS_DIR: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("BRIDGE_EMBEDDED_NATS_DIR %s is in use by another bridge (%s): two embedded servers cannot share one store; give this one a directory of its own, or BRIDGE_NATS_URL to use the other's server",
			dir, strings.TrimSpace(string(holder)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d", os.Getpid())), 0)
	return f, nil
}

// close drains the connection, so that every publish already made is flushed, then stops the embedded
// server if there is one.
func (c *natsConn) close(log *slog.Logger) {
	if err := c.nc.Drain(); err != nil {
		log.Warn("NATS drain", "error", err)
	}
	for deadline := time.Now().Add(10 * time.Second); !c.nc.IsClosed() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !c.nc.IsClosed() {
		log.Warn("NATS drain did not finish in 10s; closing")
		c.nc.Close()
	}
	if c.embedded != nil {
		c.embedded.shutdown()
		if c.lock != nil {
			c.lock.Close()
		}
	}
	// Logged here rather than from the ClosedHandler, which runs on its own goroutine and could lose the
	// race with the process's exit.
	log.Info("NATS connection drained and closed")
}

// redactURL hides user information (passwords, tokens) in a NATS URL list before it reaches a log.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		switch {
		case err != nil:
			parts[i] = "(unparseable URL)"
		case u.User != nil:
			u.User = url.User("redacted")
			parts[i] = u.String()
		default:
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// natsLogger sends nats-server's log to slog.
type natsLogger struct {
	log *slog.Logger
	// onError, when set, sees every error the server logs (how a write error on the store is learnt).
	onError func(string)
}

// Noticef is debug: the server's start-up banner would drown the bridge's own lines.
func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	if l.onError != nil {
		l.onError(msg)
	}
}
func (l natsLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
