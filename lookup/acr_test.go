package lookup

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/entra"
	"github.com/natsbridge/acr-nats-bridge/entra/entratest"
	"github.com/natsbridge/acr-nats-bridge/internal/registrytest"
)

// acrStandIn makes a test registry speak ACR's authentication: a bearer challenge on /v2/, the exchange of
// an Entra access token (checked against the stand-in tenant's keys, for ACR's resource) for a refresh
// token at /oauth2/exchange, and a refresh token for an access token at /oauth2/token.
func acrStandIn(t *testing.T, r *registrytest.Registry, tn *entratest.Tenant) (exchanges *atomic.Int64) {
	t.Helper()
	v, err := entra.New(context.Background(), entra.Config{TenantID: entratest.TenantID, Audiences: []string{"https://containerregistry.azure.net"},
		KeysURL: tn.KeysURL, Refresh: time.Hour, MinRefresh: time.Second}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	exchanges = &atomic.Int64{}
	const refresh, access = "acr-refresh-token", "acr-access-token"
	f := func(w http.ResponseWriter, req *http.Request) bool {
		switch {
		case req.Method == http.MethodPost && req.URL.Path == "/oauth2/exchange":
			_ = req.ParseForm()
			if req.PostForm.Get("grant_type") != "access_token" || req.PostForm.Get("service") != r.Host {
				http.Error(w, `{"errors":[{"code":"UNSUPPORTED"}]}`, http.StatusBadRequest)
				return true
			}
			if _, err := v.Verify(req.Context(), req.PostForm.Get("access_token")); err != nil {
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid AAD token"}]}`, http.StatusUnauthorized)
				return true
			}
			exchanges.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"refresh_token":"` + refresh + `"}`))
		case req.Method == http.MethodPost && req.URL.Path == "/oauth2/token":
			_ = req.ParseForm()
			if req.PostForm.Get("grant_type") != "refresh_token" || req.PostForm.Get("refresh_token") != refresh ||
				!strings.HasPrefix(req.PostForm.Get("scope"), "repository:team/web:pull") {
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
				return true
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"` + access + `"}`))
		case req.Header.Get("Authorization") != "Bearer "+access:
			w.Header().Set("WWW-Authenticate", `Bearer realm="https://`+r.Host+`/oauth2/token",service="`+r.Host+`",scope="repository:team/web:pull"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		default:
			return false // authorised: the registry answers
		}
		return true
	}
	r.Intercept(f)
	return exchanges
}

// A lookup against a registry that wants Microsoft Entra ID: azidentity gets a token from the stand-in
// tenant, the exchange turns it into a refresh token once, and the manifests are fetched with it.
func TestLookupWithACRTokenExchange(t *testing.T) {
	r := registrytest.New(t)
	first := pushImage(t, r, "team/web", "v1")
	second := pushImage(t, r, "team/web", "v2")

	tn := entratest.New(t)
	a := tn.Authority(t, "0b7c5f0e-1111-4c2b-9f4e-5a6b7c8d9e0f", "the-secret")
	credential := func(secret string) azcore.TokenCredential { return a.Credential(t, secret) }
	exchanges := acrStandIn(t, r, tn)
	hc := &http.Client{Transport: r.Transport}

	c := client(t, r, Options{Timeout: 10 * time.Second, Concurrency: 2, CacheSize: 10, Credential: ACRCredential(credential(a.ClientSecret), hc)})
	for _, d := range []string{first, second} {
		m, err := c.Lookup(context.Background(), r.Host, "team/web", d)
		require.NoError(t, err)
		assert.NotNil(t, m.Config)
	}
	assert.Equal(t, int64(1), exchanges.Load(), "the refresh token is kept")
	assert.Equal(t, int64(1), a.Issued.Load(), "one Entra token")

	// A secret Entra refuses (another client: nothing cached): the lookup fails as a fault that may pass, and names no secret.
	bad := client(t, r, Options{Timeout: 10 * time.Second, Concurrency: 1, CacheSize: 10, Credential: ACRCredential(credential("not-the-secret"), hc)})
	_, err := bad.Lookup(context.Background(), r.Host, "team/web", first)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
	assert.NotContains(t, err.Error(), "not-the-secret")
	assert.Equal(t, int64(1), exchanges.Load())
}

func TestRenewAt(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	// A JWT whose payload is {"exp":1700010800}: three hours on.
	jwt := "eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMTA4MDB9.sig"
	assert.Equal(t, time.Unix(1_700_010_800, 0).Add(-5*time.Minute), renewAt(jwt, now))
	assert.Equal(t, now.Add(time.Hour), renewAt("opaque", now))
}
