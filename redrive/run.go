package redrive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

// Deliverer takes events along the bridge's delivery path: a *bridge.Path.
type Deliverer interface {
	Deliver(ctx context.Context, d *bridge.Delivery) bridge.Report
}

// Options say what a redrive of blobs does.
type Options struct {
	// Prefix keeps the blobs whose names start with it; Window those whose path's hour overlaps it.
	Prefix string
	Window Window
	// DryRun reads and decides, and publishes and marks nothing.
	DryRun bool
	// Workers is how many blobs are redriven at once; MaxEvents how many events one delivery (one atomic
	// batch) takes at most.
	Workers   int
	MaxEvents int
	// MaxBlobBytes bounds one blob's size.
	MaxBlobBytes int64
	// Decoder reads the events, as the receiver would.
	Decoder cloudevents.Decoder
	// Normalizer decides, in a dry run, what each event would become.
	Normalizer bridge.Normalizer
	// Progress, when set, is told after each blob.
	Progress func(Summary)
	// Now is the clock of the done tags; nil is time.Now.
	Now func() time.Time
}

// Summary counts what a redrive did.
type Summary struct {
	// Blobs were read; Done were skipped because an earlier run redrove them; Outside were outside the window.
	Blobs, Done, Outside int
	// Events were read; Stored were stored for the first time, Duplicates already were, DeadLettered went to
	// the dead-letter subject; Failed could not be stored (the run stopped).
	Events, Stored, Duplicates, DeadLettered, Failed int
	// ByType counts the events of a dry run by type, ByReason those that would be dead-lettered, by reason.
	ByType, ByReason map[string]int
}

func (s *Summary) add(o Summary) {
	s.Blobs += o.Blobs
	s.Events += o.Events
	s.Stored += o.Stored
	s.Duplicates += o.Duplicates
	s.DeadLettered += o.DeadLettered
	s.Failed += o.Failed
	for k, v := range o.ByType {
		s.ByType[k] += v
	}
	for k, v := range o.ByReason {
		s.ByReason[k] += v
	}
}

// String is the summary line a run ends with.
func (s Summary) String() string {
	return fmt.Sprintf("blobs %d (%d done before, %d outside the window), events %d, stored %d, duplicates %d, dead-lettered %d, failed %d",
		s.Blobs, s.Done, s.Outside, s.Events, s.Stored, s.Duplicates, s.DeadLettered, s.Failed)
}

// Breakdown is a dry run's count of events by type and by the reason they would be dead-lettered.
func (s Summary) Breakdown() string {
	var b strings.Builder
	for _, part := range []struct {
		title string
		m     map[string]int
	}{{"by type", s.ByType}, {"dead-lettered, by reason", s.ByReason}} {
		if len(part.m) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s:\n", part.title)
		keys := make([]string, 0, len(part.m))
		for k := range part.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %6d events  %s\n", part.m[k], k)
		}
	}
	return b.String()
}

// ErrNotStored is wrapped by the error of a run that stopped because NATS did not store an event.
var ErrNotStored = errors.New("not stored")

// Blobs redrives the dead-letter blobs of c: each event of each blob not yet done takes the delivery
// path d (nil in a dry run), and a blob is marked done once every event of it is stored. It stops at the
// first failure to store or to reach the container, with what it did so far.
func Blobs(ctx context.Context, c *Container, d Deliverer, opts Options, log *slog.Logger) (Summary, error) {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.MaxEvents < 1 {
		opts.MaxEvents = 500
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sum := Summary{ByType: map[string]int{}, ByReason: map[string]int{}}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	blobs := make(chan Blob)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Go(func() {
			for b := range blobs {
				s, err := redriveBlob(ctx, c, d, b, opts, log)
				mu.Lock()
				sum.add(s)
				if opts.Progress != nil {
					opts.Progress(sum)
				}
				mu.Unlock()
				if err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	listErr := c.List(ctx, opts.Prefix, func(b Blob) error {
		switch {
		case b.Done():
			mu.Lock()
			sum.Done++
			mu.Unlock()
			return nil
		case !opts.Window.Contains(b.Name):
			mu.Lock()
			sum.Outside++
			mu.Unlock()
			return nil
		}
		select {
		case blobs <- b:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(blobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return sum, err
	}
	if listErr != nil {
		return sum, listErr
	}
	return sum, ctx.Err()
}

// redriveBlob reads one blob and delivers its events, in deliveries of at most MaxEvents, then marks it.
func redriveBlob(ctx context.Context, c *Container, d Deliverer, b Blob, opts Options, log *slog.Logger) (Summary, error) {
	s := Summary{Blobs: 1, ByType: map[string]int{}, ByReason: map[string]int{}}
	data, err := c.Read(ctx, b, opts.MaxBlobBytes)
	if err != nil {
		return s, err
	}
	note := "redriven from blob " + b.Name
	var deliveries []*bridge.Delivery
	entries, err := ReadBlob(data)
	if err != nil {
		// Not JSON: the blob itself is the dead letter, under an id of its name and ETag, so that a rerun
		// stores it once.
		s.Events = 1
		inv := cloudevents.Invalid{Raw: data, Reason: fmt.Sprintf("blob %s: %v", b.Name, err), ID: blobID(b)}
		if opts.DryRun {
			s.ByReason[reasonKind(inv.Reason)]++
			return s, nil
		}
		deliveries = append(deliveries, &bridge.Delivery{Invalid: []cloudevents.Invalid{inv}, Each: true})
	} else {
		s.Events = len(entries)
		deliveries = batches(entries, opts, note, &s)
	}
	if opts.DryRun {
		return s, nil
	}
	for _, dl := range deliveries {
		if err := deliver(ctx, d, dl, &s); err != nil {
			return s, fmt.Errorf("blob %s: %w", b.Name, err)
		}
	}
	if err := c.MarkDone(ctx, b, opts.Now()); err != nil {
		return s, err
	}
	log.Debug("blob redriven", "blob", b.Name, "events", s.Events, "stored", s.Stored, "duplicates", s.Duplicates, "dead_lettered", s.DeadLettered)
	return s, nil
}

// batches decodes the entries of a blob into deliveries of at most MaxEvents each; in a dry run it
// counts what each would become instead.
func batches(entries []Entry, opts Options, note string, s *Summary) []*bridge.Delivery {
	var out []*bridge.Delivery
	cur := &bridge.Delivery{Each: true, DeadLetterNote: note}
	now := opts.Now()
	for _, e := range entries {
		if len(cur.Events)+len(cur.Invalid) >= opts.MaxEvents {
			out = append(out, cur)
			cur = &bridge.Delivery{Each: true, DeadLetterNote: note}
		}
		ev, err := opts.Decoder.DecodeEvent(e.Event)
		if err != nil {
			if opts.DryRun {
				s.ByReason[reasonKind(err.Error())]++
				continue
			}
			cur.Invalid = append(cur.Invalid, cloudevents.Invalid{Raw: e.Event, Reason: err.Error()})
			continue
		}
		if opts.DryRun {
			n := opts.Normalizer.Normalize(ev, "", now)
			switch n.Kind {
			case bridge.KindDeadLetter:
				s.ByReason[reasonKind(n.Reason)]++
			case bridge.KindACR, bridge.KindPing:
				s.ByType[n.Envelope.Type]++
			default:
				s.ByType[ev.Type]++
			}
			continue
		}
		cur.Events = append(cur.Events, ev)
		cur.Headers = append(cur.Headers, e.Facts.Header())
	}
	if len(cur.Events)+len(cur.Invalid) > 0 {
		out = append(out, cur)
	}
	return out
}

// deliver takes one delivery along the path and counts it. An event the path refuses for good (too large
// for NATS, passthrough off) is dead-lettered rather than left behind; one NATS did not store stops the run.
func deliver(ctx context.Context, d Deliverer, dl *bridge.Delivery, s *Summary) error {
	rep := d.Deliver(ctx, dl)
	var refused []cloudevents.Invalid
	for i, r := range rep.Results {
		switch {
		case r.Outcome == bridge.Retry:
			s.Failed += len(rep.Results) - i
			return fmt.Errorf("%w: %w", ErrNotStored, r.Err)
		case r.Outcome == bridge.Refused:
			refused = append(refused, cloudevents.Invalid{Raw: dl.Events[i].Raw, Reason: r.Err.Error()})
		}
	}
	if len(rep.Results) == 0 && rep.Err != nil {
		s.Failed += len(dl.Invalid)
		return fmt.Errorf("%w: %w", ErrNotStored, rep.Err)
	}
	s.Duplicates += rep.Duplicates
	s.DeadLettered += rep.DeadLettered
	s.Stored += max(0, rep.Messages-rep.Duplicates-rep.DeadLettered)
	if len(refused) > 0 {
		return deliver(ctx, d, &bridge.Delivery{Invalid: refused, Each: true, DeadLetterNote: dl.DeadLetterNote}, s)
	}
	return nil
}

// blobID is the Nats-Msg-Id of a blob that is not JSON: its name and ETag.
func blobID(b Blob) string {
	sum := sha256.Sum256([]byte(b.Name + "\x00" + b.ETag))
	return "blob-" + hex.EncodeToString(sum[:16])
}

// reasonKind is a reason without what it quotes, so that a dry run's counts group alike reasons.
func reasonKind(reason string) string {
	if i := strings.IndexAny(reason, "\"'"); i > 0 {
		reason = reason[:i]
	}
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(reason), ":"))
}
