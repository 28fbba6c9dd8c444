package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/internal/natstest"

	"github.com/natsbridge/acr-nats-bridge/entra/entratest"
)

const pushWebhook = `{"id":"sec-1","action":"push","target":{"repository":"app","tag":"v1"}}`

// TestSecretsNeverLogged runs the bridge at debug level with every kind of secret configured and sent,
// rightly and wrongly, and reads every log line for them.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	const (
		token1       = "tok1-7f3a9c2e5b8d4f60"
		token2       = "tok2-1e6b4d8a2c9f7e35"
		natsPassword = "natspw-4c8e2a6f"
		guessed      = "guess-9d2f4b6a8c0e1357"
	)
	ns := natstest.Start(t, func(o *server.Options) { o.Username, o.Password = "bridge", natsPassword })
	addr := ns.Addr().(*net.TCPAddr)

	tn := entratest.New(t)
	b := startBridge(t, map[string]string{
		"BRIDGE_LOG_LEVEL":       "debug",
		"BRIDGE_NATS_URL":        fmt.Sprintf("nats://bridge:%s@127.0.0.1:%d", natsPassword, addr.Port),
		"BRIDGE_AUTH_TOKENS":     token1 + "," + token2,
		"BRIDGE_ENTRA_TENANT_ID": entratest.TenantID,
		"BRIDGE_ENTRA_AUDIENCE":  entratest.Audience,
		"BRIDGE_ENTRA_JWKS_URL":  tn.KeysURL,
	})
	jwt := tn.Token(t, "key-1", entratest.Claims())

	requests := []struct {
		query, authorization string
		want                 int
	}{
		{"", "Bearer " + token1, 200},
		{"?access_token=" + token2, "", 200},
		{"", "Bearer " + jwt, 200},
		{"", "Bearer " + guessed, 401},
		{"?access_token=" + guessed, "", 401},
		{"?access_token=" + token1 + "x", "", 401},
		{"", "Basic " + guessed, 401},
	}
	for _, r := range requests {
		req, err := http.NewRequest(http.MethodPost, "http://"+b.addr+"/webhooks/acr/reg"+r.query, strings.NewReader(pushWebhook))
		require.NoError(t, err)
		if r.authorization != "" {
			req.Header.Set("Authorization", r.authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, r.want, resp.StatusCode, string(body))
		for _, secret := range []string{token1, token2, guessed, jwt} {
			assert.NotContains(t, string(body), secret, "a response never echoes a credential")
		}
	}
	b.stop(t)

	logs := b.logs.String()
	assert.Equal(t, 3, strings.Count(logs, `"status":200`), "the admitted requests are logged")
	assert.Equal(t, 4, strings.Count(logs, `"status":401`), "the refused requests are logged")
	for _, secret := range []string{token1, token2, natsPassword, guessed, jwt, jwt[:40]} {
		assert.NotContains(t, logs, secret)
	}
	assert.NotContains(t, logs, "access_token=")
	assert.NotRegexp(t, `(?i)(bearer|basic) [A-Za-z0-9]`, logs, "no Authorization header value")
}

// The logger blanks a configured secret that an error carries, whatever its source.
func TestRedact(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: redact([]string{"hunter22-secret"})}))
	log.Error("connect failed", "error", errors.New("dial nats://u:hunter22-secret@host: refused"), "url", "nats://u:hunter22-secret@host", "n", 3)
	out := buf.String()
	assert.NotContains(t, out, "hunter22-secret")
	assert.Equal(t, 2, strings.Count(out, "[REDACTED]"), out)
	assert.Contains(t, out, `"n":3`)
}

// Slow clients are cut off by the configured timeouts, and oversized headers refused, so that a few
// connections cannot hold the server.
func TestSlowAndOversizedRequests(t *testing.T) {
	t.Parallel()
	b := startBridge(t, map[string]string{
		"BRIDGE_READ_HEADER_TIMEOUT": "300ms",
		"BRIDGE_READ_TIMEOUT":        "600ms",
		"BRIDGE_MAX_HEADER_BYTES":    "4096",
	})

	t.Run("headers that never end", func(t *testing.T) {
		conn, err := net.Dial("tcp", b.addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "POST /eventgrid HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		rest, err := io.ReadAll(conn)
		require.NoError(t, err, "the server closes the connection rather than wait for the rest")
		assert.NotContains(t, string(rest), "200 OK")
	})

	t.Run("a body that never ends", func(t *testing.T) {
		conn, err := net.Dial("tcp", b.addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "POST /webhooks/acr/reg HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\":")
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a cut-off body may be retried, so it is not a 400")
		assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	})

	t.Run("headers over the limit", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, "http://"+b.addr+"/eventgrid", strings.NewReader("[]"))
		require.NoError(t, err)
		req.Header.Set("X-Big", strings.Repeat("a", 8192))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})

	// The bridge still serves after all of that.
	resp, err := http.Post("http://"+b.addr+"/webhooks/acr/reg", "application/json", strings.NewReader(pushWebhook))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}
