package bridge_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/entra"
	"github.com/natsbridge/acr-nats-bridge/entra/entratest"
)

const (
	token1 = "0123456789abcdef-first-secret"
	token2 = "fedcba9876543210-second-secret"
)

func withTokens(s *setup) {
	s.opts.Auth.Tokens = []string{token1, token2}
	s.opts.Auth.QueryParam = "access_token"
}

func withEntra(t *testing.T, tn *entratest.Tenant) func(*setup) {
	return func(s *setup) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		v, err := entra.New(ctx, entra.Config{
			TenantID: entratest.TenantID, Audiences: []string{entratest.Audience}, KeysURL: tn.KeysURL,
			ClockSkew: time.Minute, Refresh: time.Hour, MinRefresh: time.Hour,
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		require.NoError(t, err)
		s.opts.Auth.Entra = v
	}
}

func TestSharedTokens(t *testing.T) {
	e := newEnv(t, withTokens)
	admitted := []struct {
		name, path string
		headers    []string
	}{
		{"first token in the header", "/eventgrid", []string{"Authorization", "Bearer " + token1}},
		{"second token (rotation)", "/eventgrid", []string{"Authorization", "Bearer " + token2}},
		{"scheme in lower case", "/eventgrid", []string{"Authorization", "bearer " + token1}},
		{"token in the query", "/eventgrid?access_token=" + token2, nil},
		{"webhook with the header", "/webhooks/acr/reg", []string{"Authorization", "Bearer " + token1}},
	}
	for i, tc := range admitted {
		t.Run("admits "+tc.name, func(t *testing.T) {
			body := egPush("tok-"+tc.name, "app", "v1")
			if tc.path == "/webhooks/acr/reg" {
				body = `{"id":"wh-1","action":"push","target":{"repository":"app","tag":"v1"}}`
			}
			code, _, resp := e.post(tc.path, []byte(body), tc.headers...)
			require.Equal(t, 200, code, resp)
			assert.Len(t, e.stored(), i+1)
		})
	}

	refused := []struct {
		name, path, reason string
		headers            []string
	}{
		{"no credentials", "/eventgrid", "no credentials", nil},
		{"wrong token", "/eventgrid", "credentials not accepted", []string{"Authorization", "Bearer wrong-token-0123456789"}},
		{"token prefix", "/eventgrid", "credentials not accepted", []string{"Authorization", "Bearer " + token1[:10]}},
		{"token with a suffix", "/eventgrid", "credentials not accepted", []string{"Authorization", "Bearer " + token1 + "x"}},
		{"basic scheme", "/eventgrid", "no credentials", []string{"Authorization", "Basic " + token1}},
		{"bare token", "/eventgrid", "no credentials", []string{"Authorization", token1}},
		{"wrong query token", "/eventgrid?access_token=nope", "credentials not accepted", nil},
		{"token in another query parameter", "/eventgrid?code=" + token1, "no credentials", nil},
		{"webhook without credentials", "/webhooks/acr/reg", "no credentials", nil},
		{"a JWT when Entra is off", "/eventgrid", "credentials not accepted", []string{"Authorization", "Bearer a.b.c"}},
	}
	before := len(e.stored())
	for _, tc := range refused {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			code, h, resp := e.post(tc.path, []byte(egPush("refused", "app", "v1")), tc.headers...)
			assert.Equal(t, 401, code, "every authentication failure is 401, never 403")
			assert.Contains(t, resp, tc.reason)
			assert.NotContains(t, resp, token1)
			assert.Equal(t, `Bearer realm="acr-nats-bridge"`, h.Get("WWW-Authenticate"))
			assert.Len(t, e.stored(), before, "nothing is published")
		})
	}

	t.Run("handshake and probes stay open", func(t *testing.T) {
		code, h, _ := e.do("OPTIONS", "/eventgrid", nil, "WebHook-Request-Origin", "eventgrid.azure.net")
		assert.Equal(t, 200, code)
		assert.Equal(t, "eventgrid.azure.net", h.Get("WebHook-Allowed-Origin"))
		code, _, _ = e.do("GET", "/healthz", nil)
		assert.Equal(t, 200, code)
		code, _, _ = e.do("GET", "/readyz", nil)
		assert.Equal(t, 200, code)
	})

	t.Run("the Event Grid validation event needs credentials like any POST", func(t *testing.T) {
		v := `[{"id":"v1","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"C0DE"}}]`
		code, _, _ := e.post("/eventgrid", []byte(v))
		assert.Equal(t, 401, code)
		code, _, resp := e.post("/eventgrid?access_token="+token1, []byte(v))
		assert.Equal(t, 200, code)
		assert.JSONEq(t, `{"validationResponse":"C0DE"}`, resp)
	})
}

func TestQueryParamOff(t *testing.T) {
	e := newEnv(t, withTokens, func(s *setup) { s.opts.Auth.QueryParam = "" })
	code, _, resp := e.post("/eventgrid?access_token="+token1, []byte(egPush("q", "app", "v1")))
	assert.Equal(t, 401, code)
	assert.Contains(t, resp, "no credentials: send Authorization: Bearer <token>\n")
	assert.Empty(t, e.stored())
}

func TestEntraTokens(t *testing.T) {
	tn := entratest.New(t)
	e := newEnv(t, withEntra(t, tn))

	code, _, resp := e.post("/eventgrid", []byte(egPush("entra-1", "app", "v1")), "Authorization", "Bearer "+tn.Token(t, "key-1", entratest.Claims()))
	require.Equal(t, 200, code, resp)
	require.Len(t, e.stored(), 1)
	assert.True(t, e.logs.Contains(`"auth":"entra:4962773b-9cdb-44cf-a8bf-237846a00ab7"`), e.logs.String())

	expired := entratest.Claims()
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	wrongAud := entratest.Claims()
	wrongAud["aud"] = "api://other"
	for name, tok := range map[string]string{
		"expired":        tn.Token(t, "key-1", expired),
		"wrong audience": tn.Token(t, "key-1", wrongAud),
		"alg none":       entratest.Unsigned(t, entratest.Claims()),
		"shared token":   token1,
	} {
		t.Run("refuses "+name, func(t *testing.T) {
			code, h, resp := e.post("/eventgrid", []byte(egPush("entra-bad", "app", "v1")), "Authorization", "Bearer "+tok)
			assert.Equal(t, 401, code, resp)
			assert.Equal(t, `Bearer realm="acr-nats-bridge"`, h.Get("WWW-Authenticate"))
			assert.Len(t, e.stored(), 1)
		})
	}

	t.Run("keys unreachable is 503, so Event Grid retries", func(t *testing.T) {
		tn2 := entratest.New(t)
		tn2.SetDown(true)
		e2 := newEnv(t, withEntra(t, tn2))
		code, h, _ := e2.post("/eventgrid", []byte(egPush("entra-2", "app", "v1")), "Authorization", "Bearer "+tn2.Token(t, "key-1", entratest.Claims()))
		assert.Equal(t, 503, code)
		assert.NotEmpty(t, h.Get("Retry-After"))
		assert.Empty(t, e2.stored())
	})
}

func TestTokensAndEntraEitherAdmits(t *testing.T) {
	tn := entratest.New(t)
	e := newEnv(t, withTokens, withEntra(t, tn))
	code, _, resp := e.post("/eventgrid", []byte(egPush("either-1", "app", "v1")), "Authorization", "Bearer "+token1)
	require.Equal(t, 200, code, resp)
	code, _, resp = e.post("/eventgrid", []byte(egPush("either-2", "app", "v1")), "Authorization", "Bearer "+tn.Token(t, "key-1", entratest.Claims()))
	require.Equal(t, 200, code, resp)
	code, _, resp = e.post("/eventgrid?access_token="+token2, []byte(egPush("either-3", "app", "v1")))
	require.Equal(t, 200, code, resp)
	code, _, _ = e.post("/eventgrid", []byte(egPush("either-4", "app", "v1")), "Authorization", "Bearer not-a-token-at-all")
	assert.Equal(t, 401, code)
	assert.Len(t, e.stored(), 3)
}
