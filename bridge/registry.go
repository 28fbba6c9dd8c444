package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/lookup"
)

// Registry looks pushed manifests up by digest (DESIGN §4, registry lookups): a *lookup.Client, which
// asks only the allowed hosts, and caches.
type Registry interface {
	// LookupAll looks refs up at once and returns a result for each, in order.
	LookupAll(ctx context.Context, refs []lookup.Ref) []lookup.Result
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
	var refs []lookup.Ref
	var at []int // at[k] is the event of refs[k]
	for i := range d.Events {
		ev := &d.Events[i]
		ev.Trace = ev.Trace.Or(d.Trace)
		out[i].Normalized = p.norm.Normalize(*ev, d.Registry, now)
		if lookedUp(&out[i].Normalized) {
			refs = append(refs, refOf(&out[i].Envelope.Data))
			at = append(at, i)
		}
	}
	if len(refs) == 0 {
		return out
	}
	logged := 0
	for k, r := range p.opts.Registry.LookupAll(ctx, refs) {
		l := &out[at[k]]
		p.refine(l, r)
		if err := l.lookupErr; err != nil && logged < loggedLookupFailures {
			logged++
			msg := "registry lookup failed; published with the event's own kind"
			switch {
			case l.held:
				msg = "registry lookup failed; the event is held back to come again (BRIDGE_REGISTRY_LOOKUP=required)"
			case errors.Is(err, lookup.ErrHostNotAllowed):
				msg = "registry lookup refused: the event's registry host is not in BRIDGE_REGISTRY_HOSTS"
			}
			p.log.Warn(msg, "event_id", l.Envelope.ID, "error", err)
		}
	}
	return out
}

// refOf names the manifest an event's data is about.
func refOf(d *acrevent.EventData) lookup.Ref {
	r := lookup.Ref{Repository: d.Target.Repository, Digest: d.Target.Digest}
	if d.Request != nil {
		r.Host = d.Request.Host
	}
	return r
}

// lookedUp reports whether an event's manifest is looked up: pushes only, and not ACR's chart events (a
// deleted or quarantined manifest, or a legacy chart, has nothing to fetch).
func lookedUp(n *Normalized) bool {
	a := n.Envelope.Data.Artifact
	return n.Kind == KindACR && n.Envelope.Type == acrevent.TypeImagePushed && a != nil && a.Kind != acrevent.KindChart
}

// refine sets what the lookup of a pushed event's manifest found: its artifact refined by what the
// manifest says. A manifest that is gone is lookup "not_found"; any other failure is "failed", unless
// lookups are required and the failure may pass, which holds the event back.
func (p *Path) refine(l *looked, r lookup.Result) {
	a := l.Envelope.Data.Artifact
	switch err := r.Err; {
	case err == nil:
		if !lookup.Refine(a, r.Manifest) {
			p.log.Warn("manifest annotations over 16 KiB left out of the event", "event_id", l.Envelope.ID, "digest", l.Envelope.Data.Target.Digest)
		}
	case errors.Is(err, lookup.ErrNotFound):
		a.Lookup = acrevent.LookupNotFound
	case p.opts.LookupRequired && !errors.Is(err, lookup.ErrHostNotAllowed):
		l.held = true
		l.lookupErr = fmt.Errorf("%w: %w: event %q: %w", ErrUnavailable, errLookupHeld, l.Envelope.ID, err)
	default:
		l.lookupErr = err
		a.Lookup = acrevent.LookupFailed
	}
}
