package main

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
)

// storeGuard watches the embedded server's store for a write error. nats-server keeps a stream's first
// write error (a full disk: "no space left on device") and refuses every later write without answering
// the publish, so the bridge would wait its whole publish timeout on every delivery while /readyz said
// ready. The guard learns of the error from the server's log, says it once with its cause, and makes
// publishes and /readyz fail at once with it.
//
// It does not restart JetStream to clear the error: tried on a full tmpfs, the restarted JetStream did not
// load the stream back, and the stream created in its place lost the events acknowledged before the error.
// Once the disk has room, restart the bridge.
type storeGuard struct {
	dir     string
	log     *slog.Logger
	problem atomic.Pointer[string]
}

func newStoreGuard(dir string, log *slog.Logger) *storeGuard {
	return &storeGuard{dir: dir, log: log}
}

// Check is the publisher's store check: the write error's cause while the store refuses writes.
func (g *storeGuard) Check() error {
	if p := g.problem.Load(); p != nil {
		return errors.New("the embedded NATS store refuses writes since: " + *p + " (BRIDGE_EMBEDDED_NATS_DIR " + g.dir + "); free the disk, then restart the bridge")
	}
	return nil
}

// serverError is what the server logs at error level: a critical write error marks the store broken.
func (g *storeGuard) serverError(msg string) {
	if !strings.Contains(msg, "critical write error") {
		return
	}
	cause := msg
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		cause = msg[i+2:]
	}
	if g.problem.CompareAndSwap(nil, &cause) {
		g.log.Error("the embedded NATS store refuses writes; deliveries get 503 at once until the bridge is restarted with room on the disk",
			"cause", cause, "store_dir", g.dir)
	}
}
