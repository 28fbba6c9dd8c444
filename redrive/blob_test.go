package redrive

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The dead-letter shapes of Azure's pages, as they print them.
const (
	egDeadLetter = `[{
    "id": "93902694-901e-008f-6f95-7153a806873c",
    "eventTime": "2020-08-13T17:18:13.1647262Z",
    "eventType": "Microsoft.Storage.BlobCreated",
    "dataVersion": "",
    "metadataVersion": "1",
    "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/myegteststgfoo",
    "subject": "/blobServices/default/containers/deadletter/blobs/myBlobFile.txt",
    "data": {"api": "PutBlob", "contentLength": 0},

    "deadLetterReason": "MaxDeliveryAttemptsExceeded",
    "deliveryAttempts": 1,
    "lastDeliveryOutcome": "NotFound",
    "publishTime": "2020-08-13T17:18:14.0265758Z",
    "lastDeliveryAttemptTime": "2020-08-13T17:18:14.0465788Z"
}]`
	// Azure's sample ends the object with a comma.
	ceDeadLetter = `{
    "id": "caee971c-3ca0-4254-8f99-1395b394588e",
    "source": "mysource",
    "dataversion": "1.0",
    "subject": "mySubject",
    "type": "fooEventType",
    "datacontenttype": "application/json",
    "data": {"prop1": "value1", "prop2": 5},

    "deadletterreason": "MaxDeliveryAttemptsExceeded",
    "deliveryattempts": 1,
    "lastdeliveryoutcome": "NotFound",
    "publishtime": "2020-08-13T21:21:36.4018726Z",
}`
	namespaceWrapped = `{
    "event": {"specversion": "1.0", "type": "com.example.someevent", "source": "/mycontext", "id": "A234-1234-1234",
        "time": "2018-04-05T17:31:00Z", "comexampleextension1": "value", "datacontenttype": "application/json", "data": {"a": 1}},
    "customDeliveryProperties": {"custom-header-1": "value1"},
    "deadletterProperties": {"deadletterreason": "Undeliverable due to client error", "deliveryattempts": 3,
        "deliveryresult": "Unauthorized", "publishutc": "2023-06-19T23:28:08.3063899Z", "deliveryattemptutc": "2023-06-09T23:28:08.3220145Z"}
}`
	namespaceFlat = `[{"specversion": "1.0", "type": "com.example.someevent", "source": "/mycontext", "id": "B1",
    "data": {"a": 1}, "customDeliveryProperties": {"custom-header-1": "value1"},
    "brokerProperties": {"deadletterreason": "TimeToLiveExceeded", "deliveryattempts": 10, "deliveryresult": "Dropped"}}]`
	httpStatus = `[{"id": "e1", "eventType": "Microsoft.ContainerRegistry.ImagePushed", "eventTime": "2024-05-01T10:00:00Z", "topic": "/t",
    "data": {"action": "push"}, "deadLetterReason": "UndeliverableDueToHttpBadRequest", "deliveryAttempts": 1,
    "lastDeliveryOutcome": "BadRequest", "lastHttpStatusCode": 400}]`
)

func TestReadBlobShapes(t *testing.T) {
	for _, tc := range []struct {
		name, blob string
		ids        []string
		facts      Facts
		gone       []string // keys that must not stay in the event
	}{
		{"event grid schema", egDeadLetter, []string{"93902694-901e-008f-6f95-7153a806873c"},
			Facts{Reason: "MaxDeliveryAttemptsExceeded", Attempts: "1", LastOutcome: "NotFound"},
			[]string{"deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome", "publishTime", "lastDeliveryAttemptTime"}},
		{"cloudevents schema, with Azure's trailing comma", ceDeadLetter, []string{"caee971c-3ca0-4254-8f99-1395b394588e"},
			Facts{Reason: "MaxDeliveryAttemptsExceeded", Attempts: "1", LastOutcome: "NotFound"},
			[]string{"deadletterreason", "deliveryattempts", "lastdeliveryoutcome", "publishtime"}},
		{"namespace, under event", namespaceWrapped, []string{"A234-1234-1234"},
			Facts{Reason: "Undeliverable due to client error", Attempts: "3", LastOutcome: "Unauthorized"},
			[]string{"deadletterProperties", "customDeliveryProperties"}},
		{"namespace, flat, brokerProperties", namespaceFlat, []string{"B1"},
			Facts{Reason: "TimeToLiveExceeded", Attempts: "10", LastOutcome: "Dropped"},
			[]string{"brokerProperties", "customDeliveryProperties"}},
		{"with the last HTTP status", httpStatus, []string{"e1"},
			Facts{Reason: "UndeliverableDueToHttpBadRequest", Attempts: "1", LastOutcome: "BadRequest", LastHTTPStatus: "400"},
			[]string{"lastHttpStatusCode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := ReadBlob([]byte(tc.blob))
			require.NoError(t, err)
			require.Len(t, entries, len(tc.ids))
			for i, e := range entries {
				var ev map[string]json.RawMessage
				require.NoError(t, json.Unmarshal(e.Event, &ev), "%s", e.Event)
				assert.JSONEq(t, `"`+tc.ids[i]+`"`, string(ev["id"]))
				assert.Equal(t, tc.facts, e.Facts)
				for _, k := range tc.gone {
					assert.NotContains(t, ev, k)
				}
				assert.Contains(t, ev, "data", "the event's own fields stay")
			}
		})
	}
	assert.Equal(t, "400", Facts{LastHTTPStatus: "400", Reason: "r"}.Header().Get(HeaderLastHTTPStatus))
	assert.Empty(t, Facts{Reason: "r"}.Header().Get(HeaderAttempts), "what Event Grid did not write is left out")
}

func TestReadBlobRefuses(t *testing.T) {
	for _, bad := range []string{"", "not json", `"a string"`, `[{"id":1}`, "\x00\x01", `{"a":1}{"b":2}`} {
		_, err := ReadBlob([]byte(bad))
		assert.ErrorIs(t, err, ErrNotJSON, "%q", bad)
	}
	entries, err := ReadBlob([]byte(`[1, {"id":"x","eventType":"t"}]`))
	require.NoError(t, err)
	require.Len(t, entries, 2)
	assert.Equal(t, "1", string(entries[0].Event), "an element that is not an object stays as it is, to be dead-lettered")
	// A comma inside a string is not touched.
	entries, err = ReadBlob([]byte(`[{"id":"a, ]","eventType":"t",},]`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"a, ]","eventType":"t"}`, string(entries[0].Event))
}

func TestHourOfAndWindow(t *testing.T) {
	for name, want := range map[string]string{
		"MYSUB/2024/5/1/9/480b2295.json":                      "2024-05-01T09:00:00Z",
		"ns/topic/sub/2023/9/23/2/480b2295.json":              "2023-09-23T02:00:00Z",
		"prefix/TOPIC/SUB/2024/12/31/23/x.json":               "2024-12-31T23:00:00Z",
		"SUB/2024/02/03/04/x.json":                            "2024-02-03T04:00:00Z",
		"2024/5/1/9/x.json":                                   "2024-05-01T09:00:00Z",
		"odd/1999/5/1/9/x.json":                               "",
		"SUB/2024/2/30/1/x.json":                              "",
		"SUB/2024/5/1/24/x.json":                              "",
		"flat.json":                                           "",
		"SUB/2024/5/1/9/extra/2025/1/2/3/and-a-dir/blob.json": "2025-01-02T03:00:00Z",
	} {
		h, ok := HourOf(name)
		if want == "" {
			assert.False(t, ok, name)
			continue
		}
		require.True(t, ok, name)
		assert.Equal(t, want, h.Format(time.RFC3339), name)
	}
	since, err := ParseTime("2024-05-01T09:30:00Z", false)
	require.NoError(t, err)
	until, err := ParseTime("2024-05-02", true)
	require.NoError(t, err)
	w := Window{Since: since, Until: until}
	for name, in := range map[string]bool{
		"S/2024/5/1/9/a.json":  true, // 9:00-10:00 overlaps 9:30
		"S/2024/5/1/8/a.json":  false,
		"S/2024/5/2/23/a.json": true, // the whole of the until day
		"S/2024/5/3/0/a.json":  false,
		"no-date.json":         true,
	} {
		assert.Equal(t, in, w.Contains(name), name)
	}
	_, err = ParseTime("yesterday", false)
	assert.Error(t, err)
}
