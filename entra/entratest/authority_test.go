package entratest_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/entra"
	"github.com/natsbridge/acr-nats-bridge/entra/entratest"
)

// The token service as azidentity's client secret credential uses it: a token for the scope's resource,
// signed with the tenant's key, that the bridge's own verifier accepts; a wrong secret gets none.
func TestAuthorityWithAzidentity(t *testing.T) {
	tn := entratest.New(t)
	a := tn.Authority(t, "0b7c5f0e-1111-4c2b-9f4e-5a6b7c8d9e0f", "the-secret")
	credential := func(secret string) *azidentity.ClientSecretCredential { return a.Credential(t, secret) }
	scope := policy.TokenRequestOptions{Scopes: []string{"https://eventgrid.azure.net/.default"}}

	tok, err := credential(a.ClientSecret).GetToken(context.Background(), scope)
	require.NoError(t, err)
	v, err := entra.New(context.Background(), entra.Config{TenantID: entratest.TenantID, Audiences: []string{"https://eventgrid.azure.net"},
		KeysURL: tn.KeysURL, Refresh: time.Hour, MinRefresh: time.Second}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	claims, err := v.Verify(context.Background(), tok.Token)
	require.NoError(t, err)
	assert.Equal(t, a.ClientID, claims.AppID)
	assert.Equal(t, int64(1), a.Issued.Load())

	_, err = credential("not-the-secret").GetToken(context.Background(), scope)
	var authErr *azidentity.AuthenticationFailedError
	require.ErrorAs(t, err, &authErr)
	assert.Contains(t, err.Error(), "invalid_client")
	assert.Equal(t, int64(1), a.Issued.Load())
}
