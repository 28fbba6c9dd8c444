package redrive_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/internal/azuritetest"
	"github.com/natsbridge/acr-nats-bridge/internal/natstest"
	"github.com/natsbridge/acr-nats-bridge/redrive"
)

const topic = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/myregistry"

// egPush is an ImagePushed event in the Event Grid schema, dead-lettered after three attempts.
func egPush(id, repo string) map[string]any {
	return map[string]any{"id": id, "topic": topic, "subject": repo + ":v1", "eventType": "Microsoft.ContainerRegistry.ImagePushed",
		"eventTime": "2026-12-01T10:00:00.1234567Z", "dataVersion": "1.0", "metadataVersion": "1",
		"data": map[string]any{"id": "d-" + id, "action": "push", "target": map[string]any{"repository": repo, "tag": "v1",
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + strings.Repeat("a", 64)}},
		"deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 3, "lastDeliveryOutcome": "TimedOut",
		"lastHttpStatusCode": 408, "publishTime": "2026-12-01T10:00:01Z", "lastDeliveryAttemptTime": "2026-12-02T10:00:01Z"}
}

// cePush is the same as a CloudEvent dead-lettered by a CloudEvents schema subscription.
func cePush(id, repo string) map[string]any {
	return map[string]any{"specversion": "1.0", "id": id, "source": topic, "subject": repo + ":v1", "type": "Microsoft.ContainerRegistry.ImagePushed",
		"time": "2026-12-01T10:00:00.1234567Z", "datacontenttype": "application/json",
		"data":             map[string]any{"id": "d-" + id, "action": "push", "target": map[string]any{"repository": repo, "tag": "v1"}},
		"deadletterreason": "UndeliverableDueToHttpBadRequest", "deliveryattempts": 1, "lastdeliveryoutcome": "BadRequest",
		"publishtime": "2026-12-01T10:00:01Z"}
}

// nsPush is a namespace subscription's dead letter: the CloudEvent under "event".
func nsPush(id, repo string) map[string]any {
	ev := cePush(id, repo)
	for _, k := range []string{"deadletterreason", "deliveryattempts", "lastdeliveryoutcome", "publishtime"} {
		delete(ev, k)
	}
	return map[string]any{"event": ev, "deadletterProperties": map[string]any{"deadletterreason": "TimeToLiveExceeded",
		"deliveryattempts": 10, "deliveryresult": "Dropped", "publishutc": "2026-12-01T10:00:01Z"}}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func upload(t *testing.T, c *container.Client, name string, body []byte) {
	t.Helper()
	_, err := c.NewBlockBlobClient(name).UploadBuffer(context.Background(), body, nil)
	require.NoError(t, err)
}

type env struct {
	js   jetstream.JetStream
	path *bridge.Path
	logs *natstest.LogBuffer
}

func newEnv(t *testing.T) *env {
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	logs := &natstest.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	pub, err := bridge.NewJetStream(nc, bridge.StreamConfig{Name: "ACR_EVENTS", Subjects: []string{"acr.>", "eventgrid.>"}, Create: true,
		Duplicates: 10 * time.Minute, Storage: jetstream.MemoryStorage}, 5*time.Second, 10000, nil, log)
	require.NoError(t, err)
	t.Cleanup(pub.Close)
	require.NoError(t, pub.EnsureStream(context.Background()))
	path := bridge.NewPath(bridge.PathOptions{Subjects: bridge.Subjects{Prefix: "acr", Passthrough: "eventgrid"}, Mode: bridge.ModeStructured, Passthrough: true}, pub, log)
	return &env{js: js, path: path, logs: logs}
}

func opts() redrive.Options {
	return redrive.Options{Workers: 4, MaxEvents: 50, MaxBlobBytes: 64 << 20}
}

// TestRedriveBlobs: blobs of every shape in Azurite, redriven into a real nats-server: each event on its
// usual subject with the dead-letter facts as headers, each blob tagged done; a rerun reads no done blob
// and stores nothing; a blob that is not JSON and an event that cannot be normalised end on the dead-letter
// subject, their blobs done too.
func TestRedriveBlobs(t *testing.T) {
	az := azuritetest.Start(t)
	c := az.Container(t, "deadletters")
	upload(t, c, "MYSUB/2026/12/1/10/eg.json", mustJSON(t, []any{egPush("eg-1", "team/web"), egPush("eg-2", "team/api")}))
	upload(t, c, "MYSUB/2026/12/1/11/ce.json", mustJSON(t, []any{cePush("ce-1", "team/web")}))
	upload(t, c, "ns/topic/sub/2026/12/2/3/ns.json", mustJSON(t, nsPush("ns-1", "team/web")))
	upload(t, c, "MYSUB/2026/12/1/12/garbage.json", []byte("this is not JSON"))
	bad := egPush("bad-1", "team/web")
	bad["data"] = "a string, not the ACR data"
	upload(t, c, "MYSUB/2026/12/1/12/bad.json", mustJSON(t, []any{bad}))

	e := newEnv(t)
	ctr, err := redrive.Open(azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true, Tag: true}, time.Now().Add(time.Hour)),
		redrive.Credentials{}, true, time.Now())
	require.NoError(t, err)
	sum, err := redrive.Blobs(context.Background(), ctr, e.path, opts(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Equal(t, 5, sum.Blobs)
	assert.Equal(t, 6, sum.Events)
	assert.Equal(t, 4, sum.Stored)
	assert.Equal(t, 2, sum.DeadLettered)

	msgs := natstest.Stored(t, e.js, "ACR_EVENTS")
	require.Len(t, msgs, 6)
	bySubject := map[string][]*jetstream.RawStreamMsg{}
	for _, m := range msgs {
		bySubject[m.Subject] = append(bySubject[m.Subject], m)
	}
	assert.Len(t, bySubject["acr.image.pushed.myregistry.team.web"], 3)
	assert.Len(t, bySubject["acr.image.pushed.myregistry.team.api"], 1)
	require.Len(t, bySubject["acr.deadletter"], 2)
	for _, m := range msgs {
		if m.Subject == "acr.deadletter" {
			assert.Contains(t, m.Header.Get(acrevent.HeaderError), "MYSUB/2026/12/1/12/", "the blob is named")
			continue
		}
		env, err := acrevent.DecodeEnvelope(m.Header, m.Data)
		require.NoError(t, err)
		assert.Equal(t, env.ID, m.Header.Get("Nats-Msg-Id"), "the id of a pushed event, so what was stored after all is a duplicate")
		switch env.ID {
		case "eg-1", "eg-2":
			assert.Equal(t, "MaxDeliveryAttemptsExceeded", m.Header.Get(redrive.HeaderReason))
			assert.Equal(t, "3", m.Header.Get(redrive.HeaderAttempts))
			assert.Equal(t, "TimedOut", m.Header.Get(redrive.HeaderLastOutcome))
			assert.Equal(t, "408", m.Header.Get(redrive.HeaderLastHTTPStatus))
			assert.Equal(t, "eventgrid", env.Data.Origin)
		case "ce-1":
			assert.Equal(t, "UndeliverableDueToHttpBadRequest", m.Header.Get(redrive.HeaderReason))
			assert.Empty(t, m.Header.Get(redrive.HeaderLastHTTPStatus), "not in the blob, not invented")
		case "ns-1":
			assert.Equal(t, "TimeToLiveExceeded", m.Header.Get(redrive.HeaderReason))
			assert.Equal(t, "Dropped", m.Header.Get(redrive.HeaderLastOutcome))
			assert.Equal(t, "cloudevents", env.Data.Origin)
		default:
			t.Errorf("unexpected event %q", env.ID)
		}
	}

	// Every blob is done; a rerun reads none and stores nothing.
	pager := c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Tags: true}})
	page, err := pager.NextPage(context.Background())
	require.NoError(t, err)
	for _, b := range page.Segment.BlobItems {
		require.NotNil(t, b.BlobTags, *b.Name)
		assert.Equal(t, redrive.DoneTag, *b.BlobTags.BlobTagSet[0].Key, *b.Name)
	}
	sum, err = redrive.Blobs(context.Background(), ctr, e.path, opts(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Equal(t, 0, sum.Blobs, "no done blob is read")
	assert.Equal(t, 5, sum.Done)
	assert.Len(t, natstest.Stored(t, e.js, "ACR_EVENTS"), 6)
}

// An event stored before it was dead-lettered (Event Grid timed out on a slow 200) is a duplicate.
func TestRedriveStoredAfterAllIsADuplicate(t *testing.T) {
	az := azuritetest.Start(t)
	c := az.Container(t, "dead-letters")
	e := newEnv(t)
	ctr, err := redrive.Open("dead-letters", redrive.Credentials{ConnectionString: az.ConnectionString}, true, time.Now())
	require.NoError(t, err)
	upload(t, c, "S/2026/12/1/10/a.json", mustJSON(t, []any{egPush("dup-1", "team/web")}))
	_, err = redrive.Blobs(context.Background(), ctr, e.path, opts(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	upload(t, c, "S/2026/12/1/11/b.json", mustJSON(t, []any{egPush("dup-1", "team/web"), egPush("new-1", "team/web")}))
	sum, err := redrive.Blobs(context.Background(), ctr, e.path, opts(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Duplicates)
	assert.Equal(t, 1, sum.Stored)
	assert.Equal(t, map[string]int{"dup-1": 1, "new-1": 1}, natstest.IDs(natstest.Stored(t, e.js, "ACR_EVENTS")))
}

func TestRedriveWindowAndDryRun(t *testing.T) {
	az := azuritetest.Start(t)
	c := az.Container(t, "dead-letters")
	for h := range 4 {
		upload(t, c, fmt.Sprintf("S/2026/12/1/%d/a.json", 8+h), mustJSON(t, []any{egPush(fmt.Sprintf("h%d", h), "team/web")}))
	}
	bad := egPush("bad", "team/web")
	delete(bad["data"].(map[string]any), "target")
	upload(t, c, "S/2026/12/1/9/bad.json", mustJSON(t, []any{bad}))
	upload(t, c, "undated.json", mustJSON(t, []any{cePush("u", "team/web")}))
	ctr, err := redrive.Open("dead-letters", redrive.Credentials{ConnectionString: az.ConnectionString}, false, time.Now())
	require.NoError(t, err)
	o := opts()
	o.DryRun = true
	o.Window.Since, _ = redrive.ParseTime("2026-12-01T09:30:00Z", false)
	o.Window.Until, _ = redrive.ParseTime("2026-12-01T10:00:00Z", false)
	sum, err := redrive.Blobs(context.Background(), ctr, nil, o, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Equal(t, 4, sum.Blobs, "9:00, its bad one, 10:00, and the undated blob")
	assert.Equal(t, 2, sum.Outside)
	assert.Equal(t, map[string]int{"Microsoft.ContainerRegistry.ImagePushed": 3}, sum.ByType)
	assert.Equal(t, map[string]int{"Microsoft.ContainerRegistry.ImagePushed event without data.target": 1}, sum.ByReason)
	assert.Contains(t, sum.Breakdown(), "3 events  Microsoft.ContainerRegistry.ImagePushed")

	pager := c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{Tags: true}})
	page, err := pager.NextPage(context.Background())
	require.NoError(t, err)
	for _, b := range page.Segment.BlobItems {
		assert.Nil(t, b.BlobTags, "a dry run marks nothing: %s", *b.Name)
	}
}

// Storage errors are clear, name the container, and never print a SAS signature.
func TestRedriveStorageErrors(t *testing.T) {
	az := azuritetest.Start(t)
	c := az.Container(t, "dead-letters")
	upload(t, c, "S/2026/12/1/10/a.json", mustJSON(t, []any{egPush("x", "team/web")}))
	now := time.Now()

	expired := azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true, Tag: true}, now.Add(-time.Minute))
	_, err := redrive.Open(expired, redrive.Credentials{}, true, now)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the SAS in the URL expired at")
	assert.Contains(t, err.Error(), az.BlobURL+"/dead-letters")
	assert.NotContains(t, err.Error(), "sig=")

	noTag := azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true}, now.Add(time.Hour))
	_, err = redrive.Open(noTag, redrive.Credentials{}, true, now)
	require.ErrorContains(t, err, "lacks the permission tag (t)")
	_, err = redrive.Open(noTag, redrive.Credentials{}, false, now)
	require.NoError(t, err, "a dry run sets no tags")

	// A SAS that expires between the check and the requests: the service refuses it.
	soon := azuritetest.SASURL(t, c, sas.ContainerPermissions{Read: true, List: true, Tag: true}, now.Add(2*time.Second))
	ctr, err := redrive.Open(soon, redrive.Credentials{}, true, now)
	require.NoError(t, err)
	time.Sleep(3 * time.Second)
	_, err = redrive.Blobs(context.Background(), ctr, nil, redrive.Options{DryRun: true, MaxBlobBytes: 1 << 20}, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the SAS in the URL expired at")
	assert.NotContains(t, err.Error(), "sig=")

	missing, err := redrive.Open("nosuchcontainer", redrive.Credentials{ConnectionString: az.ConnectionString}, true, now)
	require.NoError(t, err)
	_, err = redrive.Blobs(context.Background(), missing, nil, redrive.Options{DryRun: true, MaxBlobBytes: 1 << 20}, slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the container does not exist")
	assert.Contains(t, err.Error(), "nosuchcontainer")
	assert.NotContains(t, err.Error(), azuritetest.Key)

	_, err = redrive.Open("not a url", redrive.Credentials{}, true, now)
	assert.ErrorContains(t, err, "is not a container URL")
}

// TestRedriveDeadLetters: events the receiver dead-lettered under a setting (a nesting limit of 4) are
// published once the current decoder reads them (the default limit), their dead letters deleted after the
// PubAck; what still cannot be normalised stays; a rerun changes nothing.
func TestRedriveDeadLetters(t *testing.T) {
	e := newEnv(t)
	srv := bridge.NewServer(bridge.Options{MaxJSONDepth: 4, MaxEvents: 100, MaxBodyBytes: 1 << 20}, e.path, slog.New(slog.DiscardHandler))
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	deep := egPush("deep-1", "team/web")
	deep["data"].(map[string]any)["target"].(map[string]any)["annotations"] = map[string]any{"a": map[string]any{"b": "c"}}
	noTarget := egPush("bad-1", "team/web")
	delete(noTarget["data"].(map[string]any), "target")
	body := mustJSON(t, []any{egPush("ok-1", "team/web"), deep, noTarget})
	resp, err := http.Post(hs.URL+"/eventgrid", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	msgs := natstest.Stored(t, e.js, "ACR_EVENTS")
	require.Len(t, msgs, 3)
	dead := 0
	for _, m := range msgs {
		if m.Subject == "acr.deadletter" {
			dead++
		}
	}
	require.Equal(t, 2, dead, "too deep under the setting, and no target")

	o := opts()
	o.Normalizer = bridge.Normalizer{}
	sum, err := redrive.DeadLetters(context.Background(), e.js, "ACR_EVENTS", "acr.deadletter", e.path, o, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Equal(t, 2, sum.Read)
	assert.Equal(t, 1, sum.Redriven)
	assert.Equal(t, 1, sum.Stay)
	assert.Equal(t, map[string]int{"Microsoft.ContainerRegistry.ImagePushed event without data.target": 1}, sum.ByReason)

	subjects := map[string][]string{}
	for _, m := range natstest.Stored(t, e.js, "ACR_EVENTS") {
		env, err := acrevent.DecodeEnvelope(m.Header, m.Data)
		id := "dead letter"
		if err == nil {
			id = env.ID
		}
		subjects[m.Subject] = append(subjects[m.Subject], id)
	}
	assert.Equal(t, map[string][]string{"acr.image.pushed.myregistry.team.web": {"ok-1", "deep-1"}, "acr.deadletter": {"dead letter"}}, subjects)

	sum, err = redrive.DeadLetters(context.Background(), e.js, "ACR_EVENTS", "acr.deadletter", e.path, o, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Equal(t, redrive.DeadLetterSummary{Read: 1, Stay: 1, ByReason: sum.ByReason}, sum)
	assert.Len(t, natstest.Stored(t, e.js, "ACR_EVENTS"), 3)
}

// A dead letter that took its event's id (an Event Grid event whose data was not an object, fixed by a
// later version) is published under an id of its own while the duplicate window holds the first.
func TestRedriveDeadLetterHoldingItsOwnID(t *testing.T) {
	e := newEnv(t)
	ev := egPush("held-1", "team/web")
	// What an older version dead-lettered under the event's own id.
	raw := mustJSON(t, ev)
	msg := nats.NewMsg("acr.deadletter")
	msg.Header.Set("Nats-Msg-Id", "held-1")
	msg.Header.Set(acrevent.HeaderError, "an older version could not normalise it")
	msg.Header.Set(acrevent.HeaderOrigin, "eventgrid")
	msg.Data = raw
	_, err := e.js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)

	o := opts()
	sum, err := redrive.DeadLetters(context.Background(), e.js, "ACR_EVENTS", "acr.deadletter", e.path, o, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Redriven)
	msgs := natstest.Stored(t, e.js, "ACR_EVENTS")
	require.Len(t, msgs, 1, "the event, and its dead letter deleted")
	assert.Equal(t, "acr.image.pushed.myregistry.team.web", msgs[0].Subject)
	assert.Equal(t, "held-1~redriven", msgs[0].Header.Get("Nats-Msg-Id"))
}
