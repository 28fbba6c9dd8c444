package bridge

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// The state of a NATS connection as its own handlers last reported it. Asking the connection itself
// (Status, IsConnected) takes its lock, which its flusher holds while it waits on a socket a stalled
// server does not read: every request, /readyz and /metrics would wait with it. A handler's report is an
// atomic read away.

// connWatch is one connection's state.
type connWatch struct {
	up         atomic.Bool
	reconnects atomic.Uint64
}

var watches sync.Map // *nats.Conn -> *connWatch

// watch returns nc's watch, chaining its disconnect, reconnect and close handlers the first time: the
// handlers set before it keep running.
func watch(nc *nats.Conn) *connWatch {
	if w, ok := watches.Load(nc); ok {
		return w.(*connWatch)
	}
	w := &connWatch{}
	if actual, loaded := watches.LoadOrStore(nc, w); loaded {
		return actual.(*connWatch)
	}
	disconnected, reconnected, closed := nc.Opts.DisconnectedErrCB, nc.Opts.ReconnectedCB, nc.Opts.ClosedCB
	nc.SetDisconnectErrHandler(func(c *nats.Conn, err error) {
		w.up.Store(false)
		if disconnected != nil {
			disconnected(c, err)
		}
	})
	nc.SetReconnectHandler(func(c *nats.Conn) {
		w.up.Store(true)
		w.reconnects.Add(1)
		if reconnected != nil {
			reconnected(c)
		}
	})
	nc.SetClosedHandler(func(c *nats.Conn) {
		w.up.Store(false)
		watches.Delete(c)
		if closed != nil {
			closed(c)
		}
	})
	w.up.Store(nc.IsConnected()) // once, after the handlers, so that no change is missed
	return w
}

// Connected reports whether nc is connected, as its handlers last said, without taking its lock.
func Connected(nc *nats.Conn) bool { return watch(nc).up.Load() }

// MarkConnected records a first connection made after start-up, for a connection started while NATS was
// down (nats.RetryOnFailedConnect): call it from its ConnectHandler, which no setter can chain.
func MarkConnected(nc *nats.Conn) { watch(nc).up.Store(true) }

// Reconnects is how many times nc reconnected since it was first watched, without taking its lock (as
// nc.Stats() does).
func Reconnects(nc *nats.Conn) uint64 { return watch(nc).reconnects.Load() }
