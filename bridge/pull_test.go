package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/namespace"
)

// cePush is a CloudEvents ImagePushed event, as a namespace topic hands it out.
func cePush(id, repo string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":%q,"subject":"%s:v1",
		"type":"Microsoft.ContainerRegistry.ImagePushed","time":"2024-05-01T10:00:00.1234567Z","datacontenttype":"application/json",
		"data":{"id":"d-%s","timestamp":"2024-05-01T10:00:00.123Z","action":"push","target":{"repository":%q,"tag":"v1","digest":"sha256:abc"},
		"request":{"host":"myregistry.azurecr.io"}}}`, id, acrTopic, repo, id, repo))
}

// pull hands events to the path as the namespace puller does.
func (e *testEnv) pull(ctx context.Context, raws []json.RawMessage) ([]bridge.Result, bridge.Report) {
	return namespace.DeliverEach(ctx, e.path, cloudevents.Decoder{}, raws)
}

func outcomes(results []bridge.Result) []string {
	out := make([]string, len(results))
	for i, r := range results {
		out[i] = r.Outcome.String()
		if r.Duplicate {
			out[i] += " duplicate"
		}
	}
	return out
}

// TestDeliverPulled: pulled events take the path of pushed ones, and each gets its own outcome, the
// settlement of its lock: stored (a duplicate or a dead letter included) is acknowledged, what a push
// would answer 400 or 413 is refused, what it would answer 503 is retried.
func TestDeliverPulled(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.path.Passthrough = false })
	ctx := context.Background()
	events := []json.RawMessage{
		cePush("p-1", "team/web"),
		json.RawMessage(`{"specversion":"1.0","id":"p-2","source":"/s","type":"Microsoft.Storage.BlobCreated","data":{}}`),
		json.RawMessage(`{"id":"p-3","source":"/s"}`),
		json.RawMessage(`{"specversion":"1.0","id":"p-4","source":"` + acrTopic + `","type":"Microsoft.ContainerRegistry.ImageDeleted","data":"oops"}`),
		cePush("p-5", "app"),
	}
	results, sum := e.pull(ctx, events)
	assert.Equal(t, []string{"stored", "refused", "refused", "stored", "stored"}, outcomes(results))
	assert.ErrorContains(t, results[1].Err, "passthrough is off")
	assert.Equal(t, 3, sum.Messages)
	assert.Equal(t, 1, sum.DeadLettered)
	msgs := e.stored()
	require.Len(t, msgs, 3)
	assert.Equal(t, "acr.image.pushed.myregistry.team.web", msgs[0].Subject)
	assert.Equal(t, "p-1", msgs[0].Header.Get("Nats-Msg-Id"))
	assert.Equal(t, "cloudevents", envelopeOf(t, msgs[0].Data).Data.Origin)
	assert.Equal(t, "acr.deadletter", msgs[1].Subject)
	assert.Equal(t, "p-5", msgs[2].Header.Get("Nats-Msg-Id"))

	// Delivered again (a lock that expired): stored once, each a duplicate.
	results, sum = e.pull(ctx, []json.RawMessage{cePush("p-1", "team/web"), cePush("p-6", "app")})
	assert.Equal(t, []string{"stored duplicate", "stored"}, outcomes(results))
	assert.Equal(t, 1, sum.Duplicates)
	assert.Len(t, e.stored(), 4)
}

// An event over NATS's max payload is refused alone; the others of its batch are stored.
func TestDeliverPulledTooLarge(t *testing.T) {
	e := newEnv(t)
	big := cePush("big", "app")
	big = json.RawMessage(strings.Replace(string(big), `"request":{`, `"request":{"useragent":"`+strings.Repeat("x", 1<<20)+`",`, 1))
	results, _ := e.pull(context.Background(), []json.RawMessage{cePush("s-1", "app"), big, cePush("s-2", "app")})
	assert.Equal(t, []string{"stored", "refused", "stored"}, outcomes(results))
	assert.ErrorIs(t, results[1].Err, bridge.ErrTooLarge)
	assert.Len(t, e.stored(), 2)
}

// With NATS gone, every event is to be retried, none refused.
func TestDeliverPulledNATSDown(t *testing.T) {
	e := newEnv(t, func(s *setup) { s.publishTimeout = 500 * time.Millisecond })
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
	require.Eventually(t, func() bool { return !e.nc.IsConnected() }, 5*time.Second, 10*time.Millisecond)
	results, _ := e.pull(context.Background(), []json.RawMessage{cePush("d-1", "app"), cePush("d-2", "app")})
	assert.Equal(t, []string{"retry", "retry"}, outcomes(results))
	assert.ErrorIs(t, results[0].Err, bridge.ErrUnavailable)
}
