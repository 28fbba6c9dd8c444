package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/redrive"
	"github.com/natsbridge/acr-nats-bridge/tracing"
)

// runTail prints the events arriving on a subject, one line each, until ctx ends. By default it is a
// live core subscription; with --durable it reads the stream through a durable JetStream consumer, so
// that it starts with what is stored and, run again, resumes where it stopped.
func runTail(ctx context.Context, args []string, getenv environment, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", getenv.or("BRIDGE_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL")
	raw := fs.Bool("json", false, "print each message body as received instead of one summary line")
	durable := fs.String("durable", "", "read the stream with the durable JetStream consumer of this name (created if absent), acknowledging each event")
	stream := fs.String("stream", getenv.or("BRIDGE_STREAM", "ACR_EVENTS"), "stream of --durable")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bridge tail [--server URL] [--json] [--durable NAME [--stream STREAM]] [subject]\n\nPrints events as they arrive; subject defaults to %s.>\n\n", getenv.or("BRIDGE_SUBJECT_PREFIX", "acr"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	subject := getenv.or("BRIDGE_SUBJECT_PREFIX", "acr") + ".>"
	if fs.NArg() > 0 {
		subject = fs.Arg(0)
	}
	nc, err := nats.Connect(*server, nats.Name("acr-nats-bridge tail"))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redactURL(*server), err)
	}
	defer nc.Close()
	// With OTEL_* tracing on, each message printed is a CONSUMER span continuing the trace its headers
	// carry: the child of the bridge's publish span.
	tp, shutdown, err := tracing.Setup(ctx, "acr-nats-bridge-tail")
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}()
	tracer := tp.Tracer("github.com/natsbridge/acr-nats-bridge/tail")
	show := func(h nats.Header, subject string, data []byte) {
		mctx := tracing.Propagator.Extract(ctx, tracing.Header(h))
		_, span := tracer.Start(mctx, "process "+subject, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", subject), attribute.String("messaging.message.id", h.Get("Nats-Msg-Id"))))
		defer span.End()
		if *raw {
			fmt.Fprintf(stdout, "%s\n", data)
			return
		}
		fmt.Fprintln(stdout, summary(h, subject, data))
	}
	if *durable != "" {
		return tailDurable(ctx, nc, *stream, *durable, subject, show, stderr)
	}

	msgs := make(chan *nats.Msg, 1024)
	if _, err := nc.ChanSubscribe(subject, msgs); err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	fmt.Fprintf(stderr, "listening on %s at %s\n", subject, redactURL(*server))
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			show(m.Header, m.Subject, m.Data)
		}
	}
}

// tailDurable prints the stream's events on subject through a durable consumer, acknowledging each one
// once printed.
func tailDurable(ctx context.Context, nc *nats.Conn, stream, name, subject string, show func(nats.Header, string, []byte), stderr io.Writer) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("durable consumer %s on stream %s: %w", name, stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		show(m.Headers(), m.Subject(), m.Data())
		// A confirmed ack: the next run resumes after this event even if this one stops right now.
		ackCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.DoubleAck(ackCtx); err != nil {
			fmt.Fprintf(stderr, "ack %s: %v\n", m.Subject(), err)
		}
	})
	if err != nil {
		return fmt.Errorf("consume %s: %w", name, err)
	}
	fmt.Fprintf(stderr, "reading %s from stream %s with durable consumer %s\n", subject, stream, name)
	<-ctx.Done()
	// Stop pulling, let the message in hand finish, and cancel the pull request still open on the server,
	// so that no event is handed to this run after it has stopped.
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
	}
	return nil
}

// summary is one line per event: time, type (with the artifact kind when it is not the type's own),
// registry, repository:tag, digest.
func summary(h nats.Header, subject string, data []byte) string {
	env, err := acrevent.DecodeEnvelope(h, data)
	if err != nil {
		if reason := h.Get(acrevent.HeaderError); reason != "" {
			return fmt.Sprintf("%s  dead letter: %s", subject, reason)
		}
		return fmt.Sprintf("%s  %d bytes (%s)", subject, len(data), strings.TrimPrefix(err.Error(), acrevent.ErrNotEnvelope.Error()+": "))
	}
	ref, digest := "-", "-"
	if t := env.Data.Target; t != nil {
		if t.Repository != "" {
			ref = t.Repository
		}
		if t.Tag != "" {
			ref += ":" + t.Tag
		}
		if t.Digest != "" {
			digest = t.Digest
		}
	}
	what := strings.TrimPrefix(env.Type, "Microsoft.ContainerRegistry.")
	own := acrevent.KindImage
	if env.Type == acrevent.TypeChartPushed || env.Type == acrevent.TypeChartDeleted {
		own = acrevent.KindChart
	}
	if a := env.Data.Artifact; a != nil && a.Kind != own {
		what += " [" + a.Kind + "]" // not what the type says: a platform's manifest, a signature, an OCI chart
	}
	return fmt.Sprintf("%s  %s  %s  %s  %s", env.Time, what, env.Data.Registry, ref, digest) + redriven(h)
}

// redriven says, for an event a redrive brought back, what Event Grid wrote of its failure.
func redriven(h nats.Header) string {
	reason := h.Get(redrive.HeaderReason)
	if reason == "" {
		return ""
	}
	s := "  redriven: " + reason
	switch n := h.Get(redrive.HeaderAttempts); n {
	case "":
	case "1":
		s += ", 1 attempt"
	default:
		s += ", " + n + " attempts"
	}
	if o := h.Get(redrive.HeaderLastOutcome); o != "" {
		s += ", last " + o
		if code := h.Get(redrive.HeaderLastHTTPStatus); code != "" {
			s += " (" + code + ")"
		}
	}
	return s
}

// environment is what run reads of the environment: os.LookupEnv, or a map in tests.
type environment func(name string) (string, bool)

// or is the value of name, or fallback when it is unset or empty.
func (e environment) or(name, fallback string) string {
	if v, _ := e(name); v != "" {
		return v
	}
	return fallback
}
