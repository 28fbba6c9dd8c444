package acrevent_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
)

// A message as the bridge publishes it in the default, structured mode, decoded by a consumer.
func ExampleDecodeMessage() {
	msg := &nats.Msg{
		Subject: "acr.image.pushed.myregistry.team.web",
		Header:  nats.Header{"Content-Type": {"application/cloudevents+json"}, "Nats-Msg-Id": {"cb8c3971"}},
		Data: []byte(`{"specversion":"1.0","id":"cb8c3971","source":"acr://myregistry",
			"type":"Microsoft.ContainerRegistry.ImagePushed","subject":"team/web:v1","time":"2024-05-01T10:00:00.1234567Z",
			"datacontenttype":"application/json","data":{"registry":"myregistry","origin":"webhook","action":"push",
			"target":{"repository":"team/web","tag":"v1","digest":"sha256:0123","size":524}}}`),
	}
	env, err := acrevent.DecodeMessage(msg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(env.Type)
	fmt.Println(env.Data.Registry, env.Data.Target.Repository, env.Data.Target.Tag, env.Data.Target.Digest, *env.Data.Target.Size)

	parts, err := acrevent.Subjects{Prefix: "acr"}.ParseSubject(msg.Subject)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(parts.Registry, parts.Repository)
	// Output:
	// Microsoft.ContainerRegistry.ImagePushed
	// myregistry team/web v1 sha256:0123 524
	// myregistry team/web
}

// The same event in binary mode (BRIDGE_CE_MODE=binary): attributes in ce-* headers, data in the body.
func ExampleDecodeEnvelope_binaryMode() {
	h := nats.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"cb8c3971"}, "Ce-Source": {"acr://myregistry"},
		"Ce-Type": {"Microsoft.ContainerRegistry.ImageDeleted"}, "Ce-Time": {"2024-05-01T10:00:00Z"},
		"Content-Type": {"application/json"},
	}
	env, err := acrevent.DecodeEnvelope(h, []byte(`{"registry":"myregistry","origin":"eventgrid","target":{"repository":"team/web","digest":"sha256:0123"}}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(env.ID, env.Type, env.Data.Target.Repository+"@"+env.Data.Target.Digest)
	// Output: cb8c3971 Microsoft.ContainerRegistry.ImageDeleted team/web@sha256:0123
}

// A deploy bot: a durable JetStream consumer of every push to one registry, acknowledging each event once
// handled. Dead letters and passed-through events are not envelopes; DecodeEnvelope says so.
func Example_consumer() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, "ACR_EVENTS", jetstream.ConsumerConfig{
		Durable:       "deploy-bot",
		FilterSubject: "acr.image.pushed.myregistry.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		log.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		env, err := acrevent.DecodeEnvelope(m.Headers(), m.Data())
		if errors.Is(err, acrevent.ErrNotEnvelope) {
			_ = m.Term() // not an ACR event: never redeliver
			return
		}
		if err != nil {
			_ = m.Nak()
			return
		}
		// Continue the trace: with OpenTelemetry set up, this span is the child of the bridge's publish
		// span, named by the message's traceparent header (spelled in lower case: NATS header names are
		// case-sensitive, so the carrier reads them as they are).
		mctx := propagation.TraceContext{}.Extract(ctx, natsCarrier(m.Headers()))
		_, span := otel.Tracer("deploy-bot").Start(mctx, "deploy "+env.Data.Target.Repository, trace.WithSpanKind(trace.SpanKindConsumer))
		defer span.End()
		fmt.Println("deploy", env.Data.Target.Repository+":"+env.Data.Target.Tag)
		_ = m.Ack()
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Stop()
	<-ctx.Done()
}

// natsCarrier is a NATS header as an OpenTelemetry propagation carrier, keys as they are.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c natsCarrier) Set(key, value string) { c[key] = []string{value} }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
