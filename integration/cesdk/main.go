// Command cesdk is the receiver a user would write with the CloudEvents SDK and nats.go: the SDK's HTTP
// receiver (StartReceiver) decoding each CloudEvent, a JetStream publish with Nats-Msg-Id per event, and
// 200 once its ack is in. No normalisation, auth or metrics. The bridge is measured against it.
package main

import (
	"context"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", os.Getenv("LISTEN_ADDR"))
	if err != nil {
		log.Fatal(err)
	}
	c, err := cloudevents.NewClientHTTP(cehttp.WithListener(l), cehttp.WithPath("/eventgrid"))
	if err != nil {
		log.Fatal(err)
	}
	err = c.StartReceiver(context.Background(), func(ctx context.Context, ev cloudevents.Event) cloudevents.Result {
		m := nats.NewMsg("acr.image.pushed.cesdk")
		m.Header.Set(jetstream.MsgIDHeader, ev.ID())
		m.Data = ev.Data()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return cehttp.NewResult(http.StatusServiceUnavailable, "%s", err)
		}
		return cloudevents.ResultACK
	})
	log.Fatal(err)
}
