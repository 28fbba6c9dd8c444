package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/natsbridge/acr-nats-bridge/config"
)

// embedded is the bridge's own nats-server, run in this process, and what keeps its store taking writes.
//
// The store's limit (BRIDGE_EMBEDDED_NATS_MAX_STORE) is explicit. A share of the disk is worked out again
// every limitEvery and raised as room is freed: nats-server raises the limit of a running server, it does
// not lower it. Past the limit the server refuses publishes at once ("insufficient resources").
//
// A write error on the store (a full disk: "no space left on device") is another matter. nats-server keeps
// a stream's first write error and refuses every later write without answering the publish, however much
// room the disk has again, until the server restarts (docs/nats-server-write-errors.md). The bridge learns
// of the error from the server's log, says it once with its cause, answers 503 at once and fails /readyz;
// once a synced test write shows the disk has room, it restarts the server in place, on the same store and
// port. A restart recovers the stream from its files as after a crash, every acknowledged event included.
// The bridge's own connection dials through InProcessConn, so it reconnects to the new server by itself;
// TCP clients reconnect to the same port. A restart does not close the staging stores that nats-server
// leaks for atomic batches opened on the full disk; the publisher opens none once Writes reports the
// error, which bounds them to the batches open at that moment.
type embedded struct {
	dir   string
	limit config.StoreLimit
	// limitSetting is BRIDGE_EMBEDDED_NATS_MAX_STORE as given, for messages.
	limitSetting string
	log          *slog.Logger

	// opts are the options the running server was started with; mu serialises a restart and a reload.
	mu   sync.Mutex
	opts server.Options
	srv  atomic.Pointer[server.Server]

	// problem is the write error of server generation problem.gen, while one stops the store; stopped is
	// closed when one does, and replaced once the store takes writes again.
	stateMu    sync.Mutex
	problem    atomic.Pointer[storeProblem]
	stopped    atomic.Pointer[chan struct{}]
	recovering bool

	quit  chan struct{}
	loops sync.WaitGroup
}

type storeProblem struct {
	gen   int
	cause string
}

const (
	// limitEvery is how often a share of the disk is worked out again.
	limitEvery = 10 * time.Second
	// probeBytes is the room a restart waits for: written and synced in the store's directory, then
	// removed. It is a block of a stream's store at nats-server's default block size.
	probeBytes = 8 << 20
	// recoverEvery is how often a stopped store looks for room on its disk.
	recoverEvery = time.Second
)

// startEmbeddedServer starts the server with opts (its StoreDir made absolute and existing) and the
// limit, and keeps it taking writes until shutdown.
func startEmbeddedServer(opts server.Options, limit config.StoreLimit, limitSetting string, log *slog.Logger) (*embedded, error) {
	e := &embedded{dir: opts.StoreDir, limit: limit, limitSetting: limitSetting, log: log, opts: opts, quit: make(chan struct{})}
	stopped := make(chan struct{})
	e.stopped.Store(&stopped)
	bytes, err := e.storeLimit(nil)
	if err != nil {
		return nil, err
	}
	e.opts.JetStreamMaxStore = bytes
	ns, err := e.start(1)
	if err != nil {
		return nil, err
	}
	// A restart takes the port this one got, for clients to reconnect to.
	if addr, ok := ns.Addr().(*net.TCPAddr); ok {
		e.opts.Port = addr.Port
	}
	e.srv.Store(ns)
	if limit.Share > 0 {
		e.loops.Go(e.watchLimit)
	}
	return e, nil
}

// start starts generation gen of the server.
func (e *embedded) start(gen int) (*server.Server, error) {
	opts := e.opts
	ns, err := server.NewServer(&opts)
	if err != nil {
		return nil, err
	}
	ns.SetLoggerV2(natsLogger{log: e.log.With("component", "nats-server"), onError: func(msg string) { e.serverError(gen, msg) }}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("the server did not start in 10 s")
	}
	return ns, nil
}

// InProcessConn dials the running server: the bridge's connection goes through it, so that it follows a
// restart.
func (e *embedded) InProcessConn() (net.Conn, error) { return e.srv.Load().InProcessConn() }

// server is the running server.
func (e *embedded) server() *server.Server { return e.srv.Load() }

// Writes is the publisher's store check (bridge.StoreWatch): the write error's cause while the store
// refuses writes.
func (e *embedded) Writes() error {
	if p := e.problem.Load(); p != nil {
		return fmt.Errorf("the embedded NATS store refuses writes since: %s (BRIDGE_EMBEDDED_NATS_DIR %s); the server restarts by itself once the disk has room for %d MiB", p.cause, e.dir, probeBytes>>20)
	}
	return nil
}

// Stopped is closed once a write error stops the store (bridge.StoreWatch).
func (e *embedded) Stopped() <-chan struct{} { return *e.stopped.Load() }

// Room is the readiness check of the store's room (bridge.StoreWatch): an error while what it holds is past its limit, when
// the server refuses every publish ("insufficient resources") until events age out or the limit rises.
func (e *embedded) Room() error {
	info, err := e.srv.Load().Jsz(nil)
	if err != nil {
		return fmt.Errorf("the embedded NATS server: %w", err)
	}
	if info.Config.MaxStore > 0 && info.Store > uint64(info.Config.MaxStore) {
		return fmt.Errorf("the embedded NATS store is full: it holds %s, past its limit of %s (BRIDGE_EMBEDDED_NATS_MAX_STORE %s, BRIDGE_EMBEDDED_NATS_DIR %s); it takes writes again as events age out (BRIDGE_STREAM_MAX_AGE) or as room is freed on the disk",
			units.BytesSize(float64(info.Store)), units.BytesSize(float64(info.Config.MaxStore)), e.limitSetting, e.dir)
	}
	return nil
}

// serverError sees what server generation gen logs at error level: a critical write error stops the store.
func (e *embedded) serverError(gen int, msg string) {
	if !strings.Contains(msg, "critical write error") {
		return
	}
	cause := msg
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		cause = msg[i+2:]
	}
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if p := e.problem.Load(); p == nil || p.gen < gen {
		e.problem.Store(&storeProblem{gen: gen, cause: cause})
		if p == nil {
			close(*e.stopped.Load())
			e.log.Error("the embedded NATS store refuses writes; deliveries get 503 at once until the disk has room and the server has restarted",
				"cause", cause, "store_dir", e.dir)
		}
	}
	if !e.recovering {
		e.recovering = true
		e.loops.Go(func() { e.recoverStore(gen) })
	}
}

// recoverStore waits for room on the disk and restarts the server, generation gen, in place.
func (e *embedded) recoverStore(gen int) {
	since := time.Now()
	for {
		select {
		case <-e.quit:
			return
		case <-time.After(recoverEvery):
		}
		if err := e.probe(); err != nil {
			e.log.Debug("the embedded NATS store's disk has no room yet", "error", err)
			continue
		}
		gen++
		if err := e.restart(gen); err != nil {
			e.log.Error("the embedded NATS server did not restart; trying again", "error", err)
			continue
		}
		e.stateMu.Lock()
		if p := e.problem.Load(); p != nil && p.gen >= gen {
			e.stateMu.Unlock()
			continue // the new server met a write error too
		}
		stopped := make(chan struct{})
		e.stopped.Store(&stopped)
		e.problem.Store(nil)
		e.recovering = false
		e.stateMu.Unlock()
		e.log.Info("the embedded NATS store takes writes again: the server restarted in place",
			"store_dir", e.dir, "stopped_for", time.Since(since).Round(time.Millisecond).String(), "max_store", units.BytesSize(float64(e.maxStore())))
		return
	}
}

// probe writes probeBytes in the store's directory, syncs them and removes them; not while the file
// system says it has less room than that.
func (e *embedded) probe() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.dir, &st); err != nil {
		return err
	}
	if free := int64(st.Bavail) * st.Bsize; free < probeBytes {
		return fmt.Errorf("%d bytes free", free)
	}
	f, err := os.CreateTemp(e.dir, ".room-probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 1<<20)
	for range probeBytes / len(block) {
		if _, err := f.Write(block); err != nil {
			return err
		}
	}
	return f.Sync()
}

// restart stops the running server and starts generation gen on the same store and port, its limit
// worked out again.
func (e *embedded) restart(gen int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.srv.Load(); old.Running() {
		old.Shutdown()
		old.WaitForShutdown()
	}
	bytes, err := e.storeLimit(nil)
	if err != nil {
		return err
	}
	e.opts.JetStreamMaxStore = bytes
	ns, err := e.start(gen)
	if err != nil {
		return err
	}
	e.srv.Store(ns)
	return nil
}

// watchLimit raises the store limit as room is freed on the disk.
func (e *embedded) watchLimit() {
	for {
		select {
		case <-e.quit:
			return
		case <-time.After(limitEvery):
		}
		e.raiseLimit()
	}
}

// raiseLimit raises the running server's store limit to its share of the disk, if that is more.
func (e *embedded) raiseLimit() {
	e.mu.Lock()
	defer e.mu.Unlock()
	ns := e.srv.Load()
	if !ns.Running() {
		return
	}
	bytes, err := e.storeLimit(ns)
	if err != nil {
		e.log.Warn("the embedded NATS store's room is not known", "error", err)
		return
	}
	old := e.opts.JetStreamMaxStore
	if bytes <= old+old/100 {
		return
	}
	opts := e.opts
	opts.JetStreamMaxStore = bytes
	if err := ns.ReloadOptions(&opts); err != nil {
		e.log.Warn("the embedded NATS store limit was not raised", "error", err, "max_store", bytes)
		return
	}
	e.opts.JetStreamMaxStore = bytes
	e.log.Info("the embedded NATS store limit was raised: the disk has more room",
		"from", units.BytesSize(float64(old)), "to", units.BytesSize(float64(bytes)), "store_dir", e.dir)
}

// maxStore is the running server's store limit in bytes.
func (e *embedded) maxStore() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.opts.JetStreamMaxStore
}

// storeLimit is the limit in bytes: BRIDGE_EMBEDDED_NATS_MAX_STORE's size, or its share of what the store
// holds (as ns counts it, or on disk before it runs) and what the disk has free.
func (e *embedded) storeLimit(ns *server.Server) (int64, error) {
	if e.limit.Bytes > 0 {
		return e.limit.Bytes, nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(e.dir, &st); err != nil {
		return 0, fmt.Errorf("BRIDGE_EMBEDDED_NATS_DIR %s: %w", e.dir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	var held int64
	if ns != nil {
		info, err := ns.Jsz(nil)
		if err != nil {
			return 0, err
		}
		held = int64(info.Store)
	} else {
		held = dirSize(filepath.Join(e.dir, "jetstream"))
	}
	return max(int64(e.limit.Share*float64(free+held)), 1<<20), nil
}

// dirSize is the size of the files under dir; what cannot be read counts as nothing.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// shutdown stops the watch and the server.
func (e *embedded) shutdown() {
	close(e.quit)
	e.loops.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	ns := e.srv.Load()
	ns.Shutdown()
	ns.WaitForShutdown()
}
