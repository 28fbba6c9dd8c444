// Command reference is the minimal Event Grid receiver the bridge is measured against: plain net/http,
// the body decoded into just enough to name each event, a JetStream publish with Nats-Msg-Id per event,
// and 200 once every ack is in. No validation, normalisation, auth or metrics.
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type event struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
}

func main() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("POST /eventgrid", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var events []event
		if err := json.Unmarshal(body, &events); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		futures := make([]jetstream.PubAckFuture, len(events))
		for i, ev := range events {
			m := nats.NewMsg("acr.image.pushed.ref")
			m.Header.Set(jetstream.MsgIDHeader, ev.ID)
			m.Data = ev.Data
			if futures[i], err = js.PublishMsgAsync(m); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		timeout := time.After(10 * time.Second)
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			case <-timeout:
				http.Error(w, "timeout", http.StatusServiceUnavailable)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	log.Fatal(http.ListenAndServe(os.Getenv("LISTEN_ADDR"), nil))
}
