package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/lookup"
)

// Registry looks pushed manifests up by digest (DESIGN §4, registry lookups): a *lookup.Client, which
// asks only the allowed hosts, and caches.
type Registry interface {
	Lookup(ctx context.Context, host, repository, digest string) (*lookup.Manifest, error)
}

// errLookupHeld is wrapped, with ErrUnavailable, by the error of an event held back because its required
// lookup failed in a way that may pass.
var errLookupHeld = errors.New("registry lookup failed")

// looked is one event normalised ahead of its decision, and what its lookup left.
type looked struct {
	Normalized
	// lookupErr is why the lookup failed; held is set when that holds the event back (required mode).
	lookupErr error
	held      bool
}

// loggedLookupFailures is how many failed lookups of one delivery get a log line each.
const loggedLookupFailures = 5

// lookUp normalises every event of d and looks up, all at once, the manifests of the pushed ones, whose
// artifact it refines. The client bounds how many requests are under way, and caches.
func (p *Path) lookUp(ctx context.Context, d *Delivery, now time.Time) []looked {
	out := make([]looked, len(d.Events))
	var wg sync.WaitGroup
	for i := range d.Events {
		ev := &d.Events[i]
		ev.Trace = ev.Trace.Or(d.Trace)
		out[i].Normalized = p.norm.Normalize(*ev, d.Registry, now)
		if lookedUp(&out[i].Normalized) {
			wg.Go(func() { p.refine(ctx, &out[i]) })
		}
	}
	wg.Wait()
	logged := 0
	for i := range out {
		if err := out[i].lookupErr; err != nil && logged < loggedLookupFailures {
			logged++
			msg := "registry lookup failed; published with the event's own kind"
			switch {
			case out[i].held:
				msg = "registry lookup failed; the event is held back to come again (BRIDGE_REGISTRY_LOOKUP=required)"
			case errors.Is(err, lookup.ErrHostNotAllowed):
				msg = "registry lookup refused: the event's registry host is not in BRIDGE_REGISTRY_HOSTS"
			}
			p.log.Warn(msg, "event_id", out[i].Envelope.ID, "error", err)
		}
	}
	return out
}

// lookedUp reports whether an event's manifest is looked up: pushes only, and not ACR's chart events (a
// deleted or quarantined manifest, or a legacy chart, has nothing to fetch).
func lookedUp(n *Normalized) bool {
	a := n.Envelope.Data.Artifact
	return n.Kind == KindACR && n.Envelope.Type == acrevent.TypeImagePushed && a != nil && a.Kind != acrevent.KindChart
}

// refine looks up the manifest of a pushed event and refines its artifact by what it says. A manifest
// that is gone is lookup "not_found"; any other failure is "failed", unless lookups are required and the
// failure may pass, which holds the event back.
func (p *Path) refine(ctx context.Context, l *looked) {
	d := &l.Envelope.Data
	var host string
	if d.Request != nil {
		host = d.Request.Host
	}
	m, err := p.opts.Registry.Lookup(ctx, host, d.Target.Repository, d.Target.Digest)
	a := d.Artifact
	switch {
	case err == nil:
		if !lookup.Refine(a, m) {
			p.log.Warn("manifest annotations over 16 KiB left out of the event", "event_id", l.Envelope.ID, "digest", d.Target.Digest)
		}
		return
	case errors.Is(err, lookup.ErrNotFound):
		a.Lookup = acrevent.LookupNotFound
		return
	}
	l.lookupErr = err
	if p.opts.LookupRequired && !errors.Is(err, lookup.ErrHostNotAllowed) {
		l.held = true
		l.lookupErr = fmt.Errorf("%w: %w: event %q: %w", ErrUnavailable, errLookupHeld, l.Envelope.ID, err)
		return
	}
	a.Lookup = acrevent.LookupFailed
}
