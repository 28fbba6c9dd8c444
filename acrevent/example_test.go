package acrevent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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

// A deploy bot: a durable JetStream consumer of what the bridge publishes, here against a nats-server in
// this process that holds what the bridge publishes for Azure's own sample payloads (bridge/testdata/golden):
// images, charts, signatures, pings, a dead letter and a passed-through event. Each is handled once and
// acknowledged; what is not an envelope is terminated, never redelivered.
func Example_consumer() {
	url, stop := goldenServer()
	defer stop()

	nc, err := nats.Connect(url)
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
		Durable:        "deploy-bot",
		FilterSubjects: []string{"acr.>", "eventgrid.>"},
		AckPolicy:      jetstream.AckExplicitPolicy,
	})
	if err != nil {
		log.Fatal(err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		log.Fatal(err)
	}
	for m := range batch.Messages() {
		handle(ctx, m)
	}
	// Output:
	// skip ChartDeleted chart repo:mychart-1.0.0.tgz
	// skip ChartPushed chart repo:mychart-1.0.0.tgz
	// skip ImagePushed signature team/web:sha256-1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6.sig
	// skip ImagePushed attestation team/web:sha256-1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6.att
	// skip ImagePushed sbom team/web:sha256-1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6.sbom
	// skip ImagePushed manifest team/web:sha256-1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6
	// deploy myregistry team/web:sha256-1BC04B5291C26A46D918139138B992D2DE976D6851D0893B0476B85BFBDFC6E6.sig
	// skip ImageDeleted image aci-helloworld@sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5
	// deploy <name> aci-helloworld:v1
	// skip ImageDeleted image team/web@sha256:1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6
	// not an ACR event: acr.deadletter
	// not an ACR event: eventgrid.Microsoft.Storage.BlobCreated
	// skip ImagePushed manifest team/web@sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51
	// skip ImagePushed manifest team/web@sha256:f69162950f235e3cdbbad33f1f912d1a504be90d8a37d002c735d6f3e3882265
	// skip ImagePushed manifest team/web@sha256:813a89a296973e35545cfa74fe3efd172a7d19443c97c625d699e9737229b0a2
	// deploy myregistry team/web:v1.2.0
	// skip ChartDeleted chart repo:wordpress-5.4.0.tgz
	// skip ChartPushed chart repo:wordpress-5.4.0.tgz
	// skip ImageDeleted image hello-world@sha256:xxxxd5c8786bb9e621a45ece0dbxxxx1cdc624ad20da9fe62e9d25490f33xxxx
	// skip ImagePushed chart charts/web:1.4.0
	// deploy myregistry team/api:latest
	// skip ImagePushed artifact tools/config:2026-12
	// ping from myregistry
	// deploy myregistry hello-world:v1
	// skip ImageQuarantined image helloworld:1
}

// handle is the deploy bot's handler: it deploys each image pushed with a tag, skips the rest, and never
// dereferences what an event may lack (a ping has no target).
func handle(ctx context.Context, m jetstream.Msg) {
	env, err := acrevent.DecodeEnvelope(m.Headers(), m.Data())
	if errors.Is(err, acrevent.ErrNotEnvelope) { // a dead letter or a passed-through event
		fmt.Println("not an ACR event:", m.Subject())
		_ = m.Term()
		return
	}
	if err != nil {
		_ = m.Nak()
		return
	}
	// Continue the trace: with OpenTelemetry set up, this span is the child of the bridge's publish span,
	// named by the message's traceparent header (in lower case: NATS header names are case-sensitive).
	mctx := propagation.TraceContext{}.Extract(ctx, natsCarrier(m.Headers()))
	_, span := otel.Tracer("deploy-bot").Start(mctx, "handle "+env.Type, trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	switch {
	case env.Type == acrevent.TypePing: // a webhook's test: no target, nothing to do
		fmt.Println("ping from", env.Data.Registry)
	case env.Type == acrevent.TypeImagePushed && env.Data.Kind() == acrevent.KindImage && env.Data.Tag() != "":
		fmt.Println("deploy", env.Data.Registry, env.Data.Reference())
	default:
		fmt.Println("skip", strings.TrimPrefix(env.Type, "Microsoft.ContainerRegistry."), env.Data.Kind(), env.Data.Reference())
	}
	_ = m.Ack()
}

// goldenServer starts a nats-server in this process with the stream ACR_EVENTS holding every message the
// bridge published for the sample payloads, in file order, and returns its URL.
func goldenServer() (url string, stop func()) {
	dir, err := os.MkdirTemp("", "acrevent-example-")
	if err != nil {
		log.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ACR_EVENTS", Subjects: []string{"acr.>", "eventgrid.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		log.Fatal(err)
	}
	for _, m := range goldenMessages() {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			log.Fatal(err)
		}
	}
	return ns.ClientURL(), func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(dir)
	}
}

// goldenMessages are the messages of bridge/testdata/golden, in file order.
func goldenMessages() []*nats.Msg {
	files, err := filepath.Glob(filepath.Join("..", "bridge", "testdata", "golden", "*.json"))
	if err != nil || len(files) == 0 {
		log.Fatal("no golden messages: ", err)
	}
	var out []*nats.Msg
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			log.Fatal(err)
		}
		var msgs []struct {
			Subject string
			Headers map[string]string
			Body    json.RawMessage
		}
		if err := json.Unmarshal(b, &msgs); err != nil {
			log.Fatal(f, ": ", err)
		}
		for _, m := range msgs {
			msg := nats.NewMsg(m.Subject)
			for k, v := range m.Headers {
				if k != "Nats-Batch-Id" && k != "Nats-Batch-Sequence" && k != "Nats-Batch-Commit" {
					msg.Header.Set(k, v)
				}
			}
			msg.Data = m.Body
			out = append(out, msg)
		}
	}
	return out
}

// Every message the bridge publishes for Azure's sample payloads decodes, envelopes and the rest alike,
// and the accessors are safe on each: a ping's data has no target.
func ExampleEventData_Reference() {
	for _, m := range goldenMessages() {
		env, err := acrevent.DecodeMessage(m)
		if err != nil {
			fmt.Println(m.Subject, "is not an envelope")
			continue
		}
		fmt.Printf("%s %q %q\n", m.Subject, env.Data.Kind(), env.Data.Reference())
	}
	// Output:
	// acr.chart.deleted.%3Cname%3E.repo "chart" "repo:mychart-1.0.0.tgz"
	// acr.chart.pushed.%3Cname%3E.repo "chart" "repo:mychart-1.0.0.tgz"
	// acr.signature.pushed.myregistry.team.web "signature" "team/web:sha256-1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6.sig"
	// acr.attestation.pushed.myregistry.team.web "attestation" "team/web:sha256-1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6.att"
	// acr.sbom.pushed.myregistry.team.web "sbom" "team/web:sha256-1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6.sbom"
	// acr.manifest.pushed.myregistry.team.web "manifest" "team/web:sha256-1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6"
	// acr.image.pushed.myregistry.team.web "image" "team/web:sha256-1BC04B5291C26A46D918139138B992D2DE976D6851D0893B0476B85BFBDFC6E6.sig"
	// acr.image.deleted.%3Cname%3E.aci-helloworld "image" "aci-helloworld@sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5"
	// acr.image.pushed.%3Cname%3E.aci-helloworld "image" "aci-helloworld:v1"
	// acr.image.pushed.%3Cname%3E.aci-helloworld "image" "aci-helloworld:v1"
	// acr.chart.deleted.%3Cname%3E.repo "chart" "repo:mychart-1.0.0.tgz"
	// acr.chart.pushed.%3Cname%3E.repo "chart" "repo:mychart-1.0.0.tgz"
	// acr.image.deleted.%3Cname%3E.aci-helloworld "image" "aci-helloworld@sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5"
	// acr.image.pushed.%3Cname%3E.aci-helloworld "image" "aci-helloworld:v1"
	// acr.image.pushed.%3Cname%3E.aci-helloworld "image" "aci-helloworld:v1"
	// acr.image.deleted.myregistry.team.web "image" "team/web@sha256:1bc04b5291c26a46d918139138b992d2de976d6851d0893b0476b85bfbdfc6e6"
	// acr.image.pushed.myregistry.team.web "image" "team/web:v1"
	// acr.deadletter is not an envelope
	// eventgrid.Microsoft.Storage.BlobCreated is not an envelope
	// acr.manifest.pushed.myregistry.team.web "manifest" "team/web@sha256:5861314d7fccb39c2192173240eab44fa35ca66426201ca2acd0630a6258dd51"
	// acr.manifest.pushed.myregistry.team.web "manifest" "team/web@sha256:f69162950f235e3cdbbad33f1f912d1a504be90d8a37d002c735d6f3e3882265"
	// acr.manifest.pushed.myregistry.team.web "manifest" "team/web@sha256:813a89a296973e35545cfa74fe3efd172a7d19443c97c625d699e9737229b0a2"
	// acr.image.pushed.myregistry.team.web "image" "team/web:v1.2.0"
	// acr.chart.deleted.myregistry.repo "chart" "repo:wordpress-5.4.0.tgz"
	// acr.chart.pushed.myregistry.repo "chart" "repo:wordpress-5.4.0.tgz"
	// acr.image.deleted.myregistry.hello-world "image" "hello-world@sha256:xxxxd5c8786bb9e621a45ece0dbxxxx1cdc624ad20da9fe62e9d25490f33xxxx"
	// acr.chart.pushed.myregistry.charts.web "chart" "charts/web:1.4.0"
	// acr.image.pushed.myregistry.team.api "image" "team/api:latest"
	// acr.artifact.pushed.myregistry.tools.config "artifact" "tools/config:2026-12"
	// acr.ping.myregistry "" ""
	// acr.image.pushed.myregistry.hello-world "image" "hello-world:v1"
	// acr.image.pushed.myregistry.hello-world "image" "hello-world:v1"
	// acr.image.quarantined.myregistry.helloworld "image" "helloworld:1"
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
