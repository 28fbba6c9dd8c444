package lookup

import (
	"context"
	"log/slog"
	"net/http"
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

// acrStandIn makes a test registry speak ACR's authentication, taking the Entra tokens of the stand-in
// tenant for ACR's resource.
func acrStandIn(t *testing.T, r *registrytest.Registry, tn *entratest.Tenant) (exchanges *atomic.Int64) {
	t.Helper()
	v, err := entra.New(context.Background(), entra.Config{TenantID: entratest.TenantID, Audiences: []string{"https://containerregistry.azure.net"},
		KeysURL: tn.KeysURL, Refresh: time.Hour, MinRefresh: time.Second}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return r.RequireACRToken(func(ctx context.Context, token string) error {
		_, err := v.Verify(ctx, token)
		return err
	})
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
