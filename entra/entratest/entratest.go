// Package entratest is a stand-in Microsoft Entra ID tenant for tests: it publishes signing keys at a
// JWKS endpoint on a local HTTP server and signs access tokens with them.
package entratest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TenantID is the tenant the stand-in issues tokens for.
const TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// Audience is the audience of the tokens Token signs.
const Audience = "api://acr-nats-bridge"

// Tenant serves a JWKS and signs tokens.
type Tenant struct {
	// KeysURL is the JWKS endpoint.
	KeysURL string
	// Fetches counts the requests to KeysURL.
	Fetches atomic.Int64

	mu        sync.Mutex
	published map[string]*rsa.PrivateKey
	down      bool
}

// New starts a tenant with one published key, "key-1". The server stops with the test.
func New(t testing.TB) *Tenant {
	t.Helper()
	tn := &Tenant{published: map[string]*rsa.PrivateKey{}}
	tn.Publish(t, "key-1")
	srv := httptest.NewServer(http.HandlerFunc(tn.serveKeys))
	t.Cleanup(srv.Close)
	tn.KeysURL = srv.URL + "/discovery/v2.0/keys"
	return tn
}

// NewKey returns a fresh RSA key.
func NewKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Publish adds a new key under kid to the JWKS and returns it.
func (tn *Tenant) Publish(t testing.TB, kid string) *rsa.PrivateKey {
	k := NewKey(t)
	tn.mu.Lock()
	tn.published[kid] = k
	tn.mu.Unlock()
	return k
}

// Key returns the published key kid.
func (tn *Tenant) Key(kid string) *rsa.PrivateKey {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.published[kid]
}

// SetDown makes the JWKS endpoint answer 503 (true) or serve again (false).
func (tn *Tenant) SetDown(down bool) {
	tn.mu.Lock()
	tn.down = down
	tn.mu.Unlock()
}

func (tn *Tenant) serveKeys(w http.ResponseWriter, _ *http.Request) {
	tn.Fetches.Add(1)
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	type jwk struct {
		Kty string `json:"kty"`
		Use string `json:"use"`
		Kid string `json:"kid"`
		N   string `json:"n"`
		E   string `json:"e"`
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	for kid, k := range tn.published {
		set.Keys = append(set.Keys, jwk{
			Kty: "RSA", Use: "sig", Kid: kid,
			N: base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// Claims returns the claims of a valid v2 token for Audience, issued now and valid for an hour, with
// the role Event Grid's service principal is given.
func Claims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":   "https://login.microsoftonline.com/" + TenantID + "/v2.0",
		"aud":   Audience,
		"tid":   TenantID,
		"azp":   "4962773b-9cdb-44cf-a8bf-237846a00ab7",
		"roles": []string{"AzureEventGridSecureWebhookSubscriber"},
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
	}
}

// Token signs claims with RS256 and the published key kid.
func (tn *Tenant) Token(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	k := tn.Key(kid)
	if k == nil {
		t.Fatalf("no published key %q", kid)
	}
	return Sign(t, k, kid, claims)
}

// Sign signs claims with RS256 and key, naming kid in the header.
func Sign(t testing.TB, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Unsigned returns a token with alg "none" and no signature, naming kid "key-1": what an attacker sends
// to a verifier that trusts the token's own alg.
func Unsigned(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	tok.Header["kid"] = "key-1"
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
