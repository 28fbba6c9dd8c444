package entra_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/entra"
	"github.com/natsbridge/acr-nats-bridge/entra/entratest"
)

func newVerifier(t *testing.T, tn *entratest.Tenant, mod func(*entra.Config)) *entra.Verifier {
	t.Helper()
	cfg := entra.Config{
		TenantID:   entratest.TenantID,
		Audiences:  []string{entratest.Audience, "0b7c5f0e-1111-4c2b-9f4e-5a6b7c8d9e0f"},
		KeysURL:    tn.KeysURL,
		ClockSkew:  2 * time.Minute,
		Refresh:    time.Hour,
		MinRefresh: time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := entra.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	return v
}

// with returns the standard valid claims changed by f.
func with(f func(jwt.MapClaims)) jwt.MapClaims {
	c := entratest.Claims()
	f(c)
	return c
}

// hs256WithPublicKey is the key-confusion attack: HMAC-SHA256 keyed with the tenant's public key, which
// a verifier that trusts the token's alg would accept.
func hs256WithPublicKey(t *testing.T, tn *entratest.Tenant) string {
	der, err := x509.MarshalPKIXPublicKey(&tn.Key("key-1").PublicKey)
	require.NoError(t, err)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, entratest.Claims())
	tok.Header["kid"] = "key-1"
	s, err := tok.SignedString(pemKey)
	require.NoError(t, err)
	return s
}

func TestVerify(t *testing.T) {
	tn := entratest.New(t)
	v := newVerifier(t, tn, nil)
	stranger := entratest.NewKey(t)

	admitted := map[string]string{
		"v2 token": tn.Token(t, "key-1", entratest.Claims()),
		"v1 issuer": tn.Token(t, "key-1", with(func(c jwt.MapClaims) {
			c["iss"] = "https://sts.windows.net/" + entratest.TenantID + "/"
			c["appid"] = c["azp"]
			delete(c, "azp")
		})),
		"second audience":         tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["aud"] = "0b7c5f0e-1111-4c2b-9f4e-5a6b7c8d9e0f" })),
		"audience list":           tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["aud"] = []string{"other", entratest.Audience} })),
		"expired within the skew": tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })),
		"nbf within the skew":     tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Minute).Unix() })),
	}
	for name, tok := range admitted {
		t.Run("admits "+name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tok)
			require.NoError(t, err)
			assert.Equal(t, "4962773b-9cdb-44cf-a8bf-237846a00ab7", c.AppID)
		})
	}

	refused := map[string]struct{ token, reason string }{
		"unsigned (alg none)":       {entratest.Unsigned(t, entratest.Claims()), "signing method none is invalid"},
		"HS256 with the public key": {hs256WithPublicKey(t, tn), "signing method HS256 is invalid"},
		"RS384":                     {signWith(t, jwt.SigningMethodRS384, tn), "signing method RS384 is invalid"},
		"expired":                   {tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-10 * time.Minute).Unix() })), "token is expired"},
		"no exp":                    {tn.Token(t, "key-1", with(func(c jwt.MapClaims) { delete(c, "exp") })), "exp claim is required"},
		"not valid yet":             {tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(10 * time.Minute).Unix() })), "token is not valid yet"},
		"wrong audience":            {tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["aud"] = "api://someone-else" })), "token has invalid audience"},
		"no audience":               {tn.Token(t, "key-1", with(func(c jwt.MapClaims) { delete(c, "aud") })), "aud claim is required"},
		"wrong issuer": {tn.Token(t, "key-1", with(func(c jwt.MapClaims) {
			c["iss"] = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
		})), "issuer"},
		"issuer of another cloud":      {tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/" + entratest.TenantID + "/v2.0" })), "issuer"},
		"other tenant id":              {tn.Token(t, "key-1", with(func(c jwt.MapClaims) { c["tid"] = "00000000-0000-0000-0000-000000000000" })), "tenant"},
		"signed by an unpublished key": {entratest.Sign(t, stranger, "key-1", entratest.Claims()), "token signature is invalid"},
		"unknown kid":                  {entratest.Sign(t, stranger, "key-9", entratest.Claims()), "signed with a key the tenant does not publish"},
		"no kid":                       {signNoKid(t, tn), "no kid"},
		"tampered claims":              {tamper(t, tn.Token(t, "key-1", entratest.Claims())), "token signature is invalid"},
		"garbage":                      {"not.a.token", "token is malformed"},
		"empty":                        {"", "token is malformed"},
	}
	for name, tc := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			require.ErrorIs(t, err, entra.ErrInvalidToken)
			assert.Contains(t, err.Error(), tc.reason)
		})
	}
}

func signWith(t *testing.T, m jwt.SigningMethod, tn *entratest.Tenant) string {
	tok := jwt.NewWithClaims(m, entratest.Claims())
	tok.Header["kid"] = "key-1"
	s, err := tok.SignedString(tn.Key("key-1"))
	require.NoError(t, err)
	return s
}

func signNoKid(t *testing.T, tn *entratest.Tenant) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, entratest.Claims()).SignedString(tn.Key("key-1"))
	require.NoError(t, err)
	return s
}

// tamper rewrites the audience of a signed token and keeps its signature.
func tamper(t *testing.T, token string) string {
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var c map[string]any
	require.NoError(t, json.Unmarshal(payload, &c))
	c["roles"] = []string{"Admin"}
	payload, err = json.Marshal(c)
	require.NoError(t, err)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestRole(t *testing.T) {
	tn := entratest.New(t)
	v := newVerifier(t, tn, func(c *entra.Config) { c.Role = "AzureEventGridSecureWebhookSubscriber" })

	_, err := v.Verify(context.Background(), tn.Token(t, "key-1", entratest.Claims()))
	require.NoError(t, err)

	_, err = v.Verify(context.Background(), tn.Token(t, "key-1", with(func(c jwt.MapClaims) { delete(c, "roles") })))
	require.ErrorIs(t, err, entra.ErrInvalidToken)
	assert.Contains(t, err.Error(), "app role")
}

// A key published after start-up is fetched when the first token signed with it arrives.
func TestRotatedKeyIsFetched(t *testing.T) {
	tn := entratest.New(t)
	v := newVerifier(t, tn, nil)
	require.Equal(t, int64(1), tn.Fetches.Load())

	tn.Publish(t, "key-2")
	_, err := v.Verify(context.Background(), tn.Token(t, "key-2", entratest.Claims()))
	require.NoError(t, err)
	assert.Equal(t, int64(2), tn.Fetches.Load())

	// Known keys are served from the cache.
	for range 10 {
		_, err = v.Verify(context.Background(), tn.Token(t, "key-1", entratest.Claims()))
		require.NoError(t, err)
	}
	assert.Equal(t, int64(2), tn.Fetches.Load())
}

// A flood of tokens naming unknown key ids fetches the keys at most once per MinRefresh.
func TestUnknownKeyIDFloodIsRateLimited(t *testing.T) {
	tn := entratest.New(t)
	v := newVerifier(t, tn, nil)
	stranger := entratest.NewKey(t)

	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), entratest.Sign(t, stranger, "kid-"+string(rune('a'+i%26)), entratest.Claims()))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.Error(t, err)
	}
	// One fetch at start, at most one for the whole flood.
	assert.LessOrEqual(t, tn.Fetches.Load(), int64(2))

	// Valid tokens still pass during the flood's aftermath.
	_, err := v.Verify(context.Background(), tn.Token(t, "key-1", entratest.Claims()))
	require.NoError(t, err)
}

// With the key endpoint down at start, tokens cannot be checked: that may pass, so it is
// ErrKeysUnavailable (503, Event Grid retries), not ErrInvalidToken (401, Event Grid gives up).
func TestKeysUnavailable(t *testing.T) {
	tn := entratest.New(t)
	tn.SetDown(true)
	v := newVerifier(t, tn, func(c *entra.Config) { c.MinRefresh = time.Millisecond })

	_, err := v.Verify(context.Background(), tn.Token(t, "key-1", entratest.Claims()))
	require.ErrorIs(t, err, entra.ErrKeysUnavailable)
	assert.NotErrorIs(t, err, entra.ErrInvalidToken)

	tn.SetDown(false)
	require.Eventually(t, func() bool {
		_, err := v.Verify(context.Background(), tn.Token(t, "key-1", entratest.Claims()))
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
}
