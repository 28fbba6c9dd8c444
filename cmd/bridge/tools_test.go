package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/natsbridge/acr-nats-bridge/redrive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runUntil runs the bridge's command line in the background until stop is called, once it has said
// on stderr that it listens or reads.
func runUntil(t *testing.T, args ...string) (out *logSink, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errs := &logSink{}, &logSink{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, mapEnv(nil), out, errs) }()
	require.Eventually(t, func() bool {
		return strings.HasPrefix(errs.String(), "listening on") || strings.HasPrefix(errs.String(), "reading")
	}, 5*time.Second, 5*time.Millisecond, "tail did not start: %s", errs)
	return out, func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal(args[0], "did not stop")
		}
	}
}

// `bridge send` plays every sample event in every format against a running bridge, handshake first;
// `bridge tail` prints them live and, with --durable, from the stream.
func TestSendAndTail(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef-send-test"
	b := startBridge(t, map[string]string{"BRIDGE_AUTH_TOKENS": token})
	natsURL := b.logs.field("embedded NATS server started", "url")
	url := "http://" + b.addr

	live, stopLive := runUntil(t, "tail", "--server", natsURL)

	var out bytes.Buffer
	err := run(context.Background(), []string{"send", "--url", url, "--token", token, "--format", "webhook", "all"}, mapEnv(nil), &out, io.Discard)
	require.NoError(t, err, out.String())
	for _, a := range sendActions {
		assert.Regexp(t, `(?m)^`+a+` +webhook  200  \{"events":1,"duplicates":0,"deadLettered":0\}$`, out.String())
	}
	for _, format := range []string{"eventgrid", "cloudevents"} {
		out.Reset()
		err := run(context.Background(), []string{"send", "--url", url, "--token", token, "--format", format, "--registry", "other", "all"}, mapEnv(nil), &out, io.Discard)
		require.NoError(t, err, out.String())
		assert.Regexp(t, `(?m)^handshake `, out.String())
		assert.Regexp(t, `(?m)^push +`+format+`  200  `, out.String())
		assert.Regexp(t, `(?m)^chart_delete +`+format+`  200  `, out.String())
		assert.Regexp(t, `(?m)^quarantine +skipped: ACR sends quarantine only as a native webhook`, out.String())
	}

	out.Reset()
	err = run(context.Background(), []string{"send", "--url", url, "--token", "", "push"}, mapEnv(nil), &out, io.Discard)
	require.Error(t, err, "no token: refused")
	assert.Contains(t, out.String(), "401")

	// 6 webhooks + 4 Event Grid + 4 CloudEvents events.
	require.Eventually(t, func() bool { return strings.Count(live.String(), "\n") >= 14 }, 5*time.Second, 20*time.Millisecond, live.String())
	stopLive()
	lines := live.String()
	for _, want := range []string{
		"ImagePushed  myregistry  hello-world:v1  sha256:",
		"ImageDeleted  myregistry  hello-world  sha256:",
		"ChartPushed  myregistry  hello-world:hello-world-1.tgz  sha256:",
		"ChartDeleted  other  hello-world:hello-world-1.tgz  sha256:",
		"ImageQuarantined  myregistry  hello-world:v1  sha256:",
		"Ping  myregistry  -  -",
	} {
		assert.Contains(t, lines, want)
	}

	// A durable consumer reads what is stored, and resumes where it stopped.
	durable, stop := runUntil(t, "tail", "--server", natsURL, "--durable", "test-reader", "acr.image.>")
	require.Eventually(t, func() bool { return strings.Count(durable.String(), "\n") == 7 }, 5*time.Second, 20*time.Millisecond, durable.String())
	stop()
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"send", "--url", url, "--token", token, "--tag", "v2", "push"}, mapEnv(nil), &out, io.Discard))
	again, stop := runUntil(t, "tail", "--server", natsURL, "--durable", "test-reader", "--json", "acr.image.>")
	require.Eventually(t, func() bool { return strings.Count(again.String(), "\n") == 1 }, 5*time.Second, 20*time.Millisecond, again.String())
	time.Sleep(200 * time.Millisecond)
	stop()
	assert.Equal(t, 1, strings.Count(again.String(), "\n"), "only the event stored since: %s", again.String())
	assert.Contains(t, again.String(), `"tag":"v2"`)
}

// A tail line says what was pushed when the type alone does not: a platform's manifest, a signature, a chart
// pushed as an image.
func TestSummaryNamesTheKind(t *testing.T) {
	t.Parallel()
	line := func(typ, kind, tag string) string {
		body := fmt.Sprintf(`{"specversion":"1.0","id":"1","source":"s","type":"Microsoft.ContainerRegistry.%s","time":"2026-12-01T10:00:00Z",
			"datacontenttype":"application/json","data":{"registry":"r","origin":"eventgrid","target":{"repository":"web","tag":%q,"digest":"sha256:1"},
			"artifact":{"kind":%q}}}`, typ, tag, kind)
		return summary(nats.Header{}, "acr.x", []byte(body))
	}
	assert.Equal(t, "2026-12-01T10:00:00Z  ImagePushed  r  web:v1  sha256:1", line("ImagePushed", "image", "v1"))
	assert.Equal(t, "2026-12-01T10:00:00Z  ImagePushed [signature]  r  web:sha256-1.sig  sha256:1", line("ImagePushed", "signature", "sha256-1.sig"))
	assert.Equal(t, "2026-12-01T10:00:00Z  ImagePushed [chart]  r  web:1.0  sha256:1", line("ImagePushed", "chart", "1.0"))
	assert.Equal(t, "2026-12-01T10:00:00Z  ChartPushed  r  web:1.0  sha256:1", line("ChartPushed", "chart", "1.0"))
}

// A redriven event's tail line says what Event Grid wrote of its failure.
func TestSummaryOfARedrivenEvent(t *testing.T) {
	t.Parallel()
	body := `{"specversion":"1.0","id":"1","source":"s","type":"Microsoft.ContainerRegistry.ImagePushed","time":"2026-12-01T10:00:00Z",
		"datacontenttype":"application/json","data":{"registry":"r","origin":"eventgrid","target":{"repository":"web","tag":"v1","digest":"sha256:1"},"artifact":{"kind":"image"}}}`
	h := nats.Header{}
	h.Set(redrive.HeaderReason, "MaxDeliveryAttemptsExceeded")
	h.Set(redrive.HeaderAttempts, "18")
	h.Set(redrive.HeaderLastOutcome, "TimedOut")
	h.Set(redrive.HeaderLastHTTPStatus, "408")
	assert.Equal(t, "2026-12-01T10:00:00Z  ImagePushed  r  web:v1  sha256:1  redriven: MaxDeliveryAttemptsExceeded, 18 attempts, last TimedOut (408)",
		summary(h, "acr.x", []byte(body)))
}
