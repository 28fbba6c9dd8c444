package entratest

import (
	"crypto/tls"
	"crypto/x509"

	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/golang-jwt/jwt/v5"
)

// Authority is the tenant's token service as the Azure SDK's azidentity (and MSAL under it) uses it:
// instance discovery, OpenID configuration, and the client credentials grant, over HTTPS. It issues
// tokens for one client, signed with the tenant's key "key-1", for the resource the scope names.
type Authority struct {
	// URL is the authority host, https://127.0.0.1:port (AZURE_AUTHORITY_HOST).
	URL string
	// CertFile is a PEM file of the server's certificate, for SSL_CERT_FILE.
	CertFile string
	// ClientID and ClientSecret are the one client's credentials (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET).
	ClientID, ClientSecret string
	// Issued counts the tokens issued.
	Issued atomic.Int64

	tenant *Tenant
}

// Authority starts the tenant's token service for the client clientID with secret. It stops with the test.
func (tn *Tenant) Authority(t testing.TB, clientID, secret string) *Authority {
	t.Helper()
	a := &Authority{ClientID: clientID, ClientSecret: secret, tenant: tn}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.serve(t, w, r) }))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	a.CertFile = filepath.Join(t.TempDir(), "authority.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(a.CertFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *Authority) serve(t testing.TB, w http.ResponseWriter, r *http.Request) {
	base := a.URL + "/" + TenantID
	host := strings.TrimPrefix(a.URL, "https://")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/common/discovery/instance":
		writeJSON(w, http.StatusOK, map[string]any{
			"api-version":               "1.1",
			"tenant_discovery_endpoint": base + "/v2.0/.well-known/openid-configuration",
			"metadata":                  []map[string]any{{"preferred_network": host, "preferred_cache": host, "aliases": []string{host}}},
		})
	case r.Method == http.MethodGet && r.URL.Path == "/"+TenantID+"/v2.0/.well-known/openid-configuration":
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                 base + "/v2.0",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"jwks_uri":               a.tenant.KeysURL,
		})
	case r.Method == http.MethodPost && r.URL.Path == "/"+TenantID+"/oauth2/v2.0/token":
		a.token(t, w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": r.URL.Path})
	}
}

// token answers the client credentials grant.
func (a *Authority) token(t testing.TB, w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	if r.PostForm.Get("client_id") != a.ClientID || r.PostForm.Get("client_secret") != a.ClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
		return
	}
	// MSAL adds OpenID scopes to the resource's ".default" one.
	var resource string
	for scope := range strings.FieldsSeq(r.PostForm.Get("scope")) {
		if res, ok := strings.CutSuffix(scope, "/.default"); ok {
			resource = res
		}
	}
	if resource == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_scope"})
		return
	}
	now := time.Now()
	tok := a.tenant.Token(t, "key-1", jwt.MapClaims{
		"iss": "https://login.microsoftonline.com/" + TenantID + "/v2.0",
		"aud": resource,
		"tid": TenantID,
		"azp": a.ClientID,
		"oid": a.ClientID,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	})
	a.Issued.Add(1)
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
}

// Credential is azidentity's client secret credential for the authority's client with secret (its own
// ClientSecret, or a wrong one), trusting the authority's certificate, as a service of a private cloud
// would be configured.
func (a *Authority) Credential(t testing.TB, secret string) *azidentity.ClientSecretCredential {
	t.Helper()
	pem, err := os.ReadFile(a.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("the authority's certificate does not load")
	}
	c, err := azidentity.NewClientSecretCredential(TenantID, a.ClientID, secret, &azidentity.ClientSecretCredentialOptions{
		// A private cloud's authority: instance discovery would ask the public cloud about it.
		DisableInstanceDiscovery: true,
		ClientOptions: azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: a.URL + "/"},
			Transport: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
