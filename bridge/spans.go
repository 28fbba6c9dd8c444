package bridge

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/tracing"
)

// maxLinks bounds the links of a delivery span to the events it carries (a batch may hold 5000).
const maxLinks = 128

// contextOf is the span context of a W3C trace context, invalid when there is none.
func contextOf(t cloudevents.Trace) trace.SpanContext {
	if t.Parent == "" {
		return trace.SpanContext{}
	}
	carrier := propagation.MapCarrier{"traceparent": t.Parent}
	if t.State != "" {
		carrier["tracestate"] = t.State
	}
	return trace.SpanContextFromContext(tracing.Propagator.Extract(context.Background(), carrier))
}

// finishNothing is the finish of a delivery without spans.
func finishNothing([]Ack, error) {}

// startSpans starts the SERVER span of a delivery and a PRODUCER span per message of out, and writes each
// producer span's context into its message's trace headers, so that a consumer's span is its child (the
// envelope keeps the creator's context). The delivery span is the child of the delivery's own trace
// context (a request's traceparent header); else, for a delivery of one event, of that event's; else a
// root linked to the events' contexts. finish ends the spans by the outcome of the publish. Without
// tracing it does nothing, and costs nothing: the messages keep the incoming context.
func (p *Path) startSpans(ctx context.Context, d *Delivery, out *outbox) (finish func(acks []Ack, err error)) {
	if !p.tracing || len(out.msgs) == 0 {
		return finishNothing
	}
	attrs := append([]attribute.KeyValue{attribute.Int("messaging.batch.message_count", len(out.msgs))}, d.SpanAttrs...)
	parent := contextOf(d.Trace)
	var links []trace.Link
	if !parent.IsValid() {
		if len(out.msgs) == 1 {
			parent = contextOf(out.traces[0])
		} else {
			for _, t := range out.traces {
				if sc := contextOf(t); sc.IsValid() && len(links) < maxLinks {
					links = append(links, trace.Link{SpanContext: sc})
				}
			}
		}
	}
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	ctx, server := p.tracer.Start(ctx, d.Span, trace.WithSpanKind(trace.SpanKindServer), trace.WithLinks(links...),
		trace.WithAttributes(attrs...))
	producers := make([]trace.Span, len(out.msgs))
	for i, m := range out.msgs {
		opts := []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "nats"),
				attribute.String("messaging.operation.name", "publish"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.destination.name", m.Subject),
				attribute.String("messaging.destination.template", out.templates[i]),
				attribute.String("messaging.message.id", m.Header.Get("Nats-Msg-Id")),
			),
		}
		if sc := contextOf(out.traces[i]); sc.IsValid() && !sc.Equal(parent) {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
		pctx, span := p.tracer.Start(ctx, "publish "+out.templates[i], opts...)
		tracing.Propagator.Inject(pctx, tracing.Header(m.Header))
		producers[i] = span
	}
	return func(acks []Ack, err error) {
		for i, span := range producers {
			switch {
			case err != nil:
				span.RecordError(err)
				span.SetStatus(codes.Error, "not stored")
			case i < len(acks) && acks[i].Stream != "":
				span.SetAttributes(attribute.Int64("messaging.nats.stream.sequence", int64(acks[i].Sequence)),
					attribute.Bool("messaging.nats.duplicate", acks[i].Duplicate))
			}
			span.End()
		}
		if err != nil {
			server.RecordError(err)
			server.SetStatus(codes.Error, "not stored")
		}
		server.End()
	}
}
