package entratest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
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
	pem, err := os.ReadFile(a.CertFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	credential := func(secret string) *azidentity.ClientSecretCredential {
		c, err := azidentity.NewClientSecretCredential(entratest.TenantID, a.ClientID, secret, &azidentity.ClientSecretCredentialOptions{
			// A private cloud's authority: instance discovery would ask the public cloud about it.
			DisableInstanceDiscovery: true,
			ClientOptions:            azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: a.URL + "/"}, Transport: hc},
		})
		require.NoError(t, err)
		return c
	}
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
