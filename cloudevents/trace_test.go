package cloudevents_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/natsbridge/acr-nats-bridge/cloudevents"
)

func TestValidTraceParent(t *testing.T) {
	for s, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00":       true,
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra": true,
		"": false,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01":       false, // upper case
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01":       false, // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01":       false, // zero parent id
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01":       false, // forbidden version
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra": false, // version 00 has no more
		"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01":       false,
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01":       false,
		"not a traceparent at all, but fifty-five characters long!!":    false,
	} {
		assert.Equal(t, want, cloudevents.ValidTraceParent(s), s)
	}
}

func TestTraceOf(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	assert.Equal(t, cloudevents.Trace{Parent: tp, State: "congo=t61rcWkgMzE"}, cloudevents.TraceOf(tp, "congo=t61rcWkgMzE"))
	assert.Equal(t, cloudevents.Trace{}, cloudevents.TraceOf("garbage", "congo=t61rcWkgMzE"), "a state without a valid parent is dropped too")
	h := http.Header{}
	h.Set("traceparent", tp)
	assert.Equal(t, tp, cloudevents.TraceOfHeader(h).Parent)
	own := cloudevents.Trace{Parent: "00-11111111111111111111111111111111-2222222222222222-01"}
	assert.Equal(t, own, own.Or(cloudevents.TraceOfHeader(h)), "the event's own context first")
	assert.Equal(t, tp, cloudevents.Trace{}.Or(cloudevents.TraceOfHeader(h)).Parent)
}
