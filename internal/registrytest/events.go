package registrytest

import (
	"encoding/json"
	"fmt"
	"time"
)

// Events turn pushes into the ACR events Azure sends for them, one per manifest PUT, in each schema.

// Data is the ACR event data of a push (the native webhook's body, Event Grid's data), as ACR writes it:
// the request's host is the registry's login server, host.
func (p Push) Data(id, host string) map[string]any {
	target := map[string]any{"mediaType": p.MediaType, "size": p.Size, "digest": p.Digest, "length": p.Size, "repository": p.Repository}
	if p.Tag != "" {
		target["tag"] = p.Tag
	}
	return map[string]any{
		"id": id, "timestamp": "2026-12-01T10:00:00.1234567Z", "action": "push", "target": target,
		"request": map[string]any{"id": "req-" + id, "host": host, "method": "PUT", "useragent": "registrytest"},
	}
}

// Subject is the Event Grid subject of a push: repo:tag, else repo@digest.
func (p Push) Subject() string {
	if p.Tag != "" {
		return p.Repository + ":" + p.Tag
	}
	return p.Repository + "@" + p.Digest
}

// Topic is the Event Grid topic of a registry.
func Topic(registry string) string {
	return "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/" + registry
}

// Webhook is the native webhook body of a push.
func (p Push) Webhook(id, host string) []byte { return mustJSON(p.Data(id, host)) }

// EventGrid is the Event Grid schema event of a push.
func (p Push) EventGrid(id, registry, host string) map[string]any {
	return map[string]any{"id": id, "topic": Topic(registry), "subject": p.Subject(), "eventType": "Microsoft.ContainerRegistry.ImagePushed",
		"eventTime": time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).Format(time.RFC3339Nano), "data": p.Data(id, host), "dataVersion": "1.0", "metadataVersion": "1"}
}

// CloudEvent is the CloudEvents 1.0 event of a push.
func (p Push) CloudEvent(id, registry, host string) map[string]any {
	return map[string]any{"specversion": "1.0", "id": id, "source": Topic(registry), "subject": p.Subject(),
		"type": "Microsoft.ContainerRegistry.ImagePushed", "time": "2026-12-01T10:00:00.1234567Z", "datacontenttype": "application/json",
		"data": p.Data(id, host)}
}

// Batch is events as one JSON array.
func Batch(events ...map[string]any) []byte { return mustJSON(events) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("registrytest: %v", err)) // maps of strings and numbers always encode
	}
	return b
}
