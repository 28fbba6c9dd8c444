// Package entra verifies the Microsoft Entra ID access tokens that Event Grid's secure webhook delivery
// sends as a bearer token on every POST: RS256 signatures against the tenant's published signing keys,
// issuer, audience, expiry and, optionally, an app role.
package entra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// ErrInvalidToken is wrapped by every reason a token is refused: a bad signature, a wrong issuer or
// audience, an expired token, a missing role. No retry can fix it.
var ErrInvalidToken = errors.New("invalid Entra ID token")

// ErrKeysUnavailable means a token could not be checked because the tenant's signing keys are not at
// hand: none loaded yet, or a fetch for a new key id is held back by the refresh rate limit. It may
// pass, so a sender should retry.
var ErrKeysUnavailable = errors.New("Entra ID signing keys unavailable")

// Config says which tokens are accepted.
type Config struct {
	// TenantID is the directory (tenant) id, a GUID; both the v1 and the v2 issuer of that tenant are accepted.
	TenantID string
	// Audiences are the accepted aud values: the bridge app's application id URI and/or client id.
	Audiences []string
	// Role, when set, must be among the token's roles.
	Role string
	// KeysURL is the JWKS endpoint of the tenant.
	KeysURL string
	// ClockSkew is allowed on exp and nbf.
	ClockSkew time.Duration
	// Refresh is how often the keys are fetched again.
	Refresh time.Duration
	// MinRefresh is the least time between fetches caused by tokens with an unknown key id.
	MinRefresh time.Duration
	// Client fetches the keys; nil means a client with a 10s timeout.
	Client *http.Client
}

// Claims are what the bridge logs of an admitted token.
type Claims struct {
	// AppID is the client application that asked for the token (appid in v1 tokens, azp in v2).
	AppID string
}

// Verifier checks tokens against one tenant's keys, which it caches and refreshes.
type Verifier struct {
	keys    keyfunc.Keyfunc
	parser  *jwt.Parser
	issuers []string
	tenant  string
	role    string
}

// keyFetchTimeout bounds one fetch of the signing keys, and the wait of a request for a fetch that an
// unknown key id caused.
const keyFetchTimeout = 5 * time.Second

// New starts fetching the tenant's signing keys; the periodic refresh stops when ctx ends. A first fetch
// that fails is logged, not fatal: until keys arrive, tokens are answered with ErrKeysUnavailable.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Verifier, error) {
	if cfg.TenantID == "" || len(cfg.Audiences) == 0 || cfg.KeysURL == "" {
		return nil, errors.New("entra: tenant id, audience and keys URL are required")
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: keyFetchTimeout}
	}
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.KeysURL}, keyfunc.Override{
		Client:           client,
		HTTPTimeout:      keyFetchTimeout,
		RefreshInterval:  cfg.Refresh,
		RateLimitWaitMax: keyFetchTimeout,
		// A token with an unknown kid fetches the keys again at most once per MinRefresh; other such
		// tokens in between fail at once instead of waiting (the limiter refuses a wait past its deadline).
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cfg.MinRefresh), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("fetching Entra ID signing keys failed", "url", u, "error", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("entra: signing keys from %s: %w", cfg.KeysURL, err)
	}
	v := &Verifier{
		keys: keys,
		parser: jwt.NewParser(
			// Only RS256, Entra's algorithm: this refuses alg "none" and HS256 signed with the public key.
			jwt.WithValidMethods([]string{"RS256"}),
			jwt.WithAudience(cfg.Audiences...),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(cfg.ClockSkew),
		),
		issuers: []string{
			"https://login.microsoftonline.com/" + cfg.TenantID + "/v2.0",
			"https://sts.windows.net/" + cfg.TenantID + "/",
		},
		tenant: cfg.TenantID,
		role:   cfg.Role,
	}
	if n := v.keyCount(ctx); n == 0 {
		log.Warn("no Entra ID signing keys loaded yet; Entra tokens get 503 until they are", "url", cfg.KeysURL)
	} else {
		log.Info("Entra ID signing keys loaded", "url", cfg.KeysURL, "keys", n)
	}
	return v, nil
}

// claims are the parts of an Entra access token the verifier reads.
type claims struct {
	jwt.RegisteredClaims
	TenantID string   `json:"tid"`
	Roles    []string `json:"roles"`
	AppID    string   `json:"appid"`
	AZP      string   `json:"azp"`
}

// Verify checks a bearer token and returns its claims. Errors wrap ErrInvalidToken or ErrKeysUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, v.keyfunc(ctx))
	switch {
	case err == nil:
	case errors.Is(err, keyfunc.ErrKeyfunc) && !errors.Is(err, jwkset.ErrKeyNotFound),
		errors.Is(err, jwkset.ErrKeyNotFound) && v.keyCount(ctx) == 0:
		return Claims{}, fmt.Errorf("%w: cannot check the token now", ErrKeysUnavailable)
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return Claims{}, fmt.Errorf("%w: signed with a key the tenant does not publish", ErrInvalidToken)
	default:
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if !slices.Contains(v.issuers, c.Issuer) {
		return Claims{}, fmt.Errorf("%w: issuer %q is not the configured tenant", ErrInvalidToken, c.Issuer)
	}
	if c.TenantID != "" && c.TenantID != v.tenant {
		return Claims{}, fmt.Errorf("%w: tenant %q is not the configured tenant", ErrInvalidToken, c.TenantID)
	}
	if v.role != "" && !slices.Contains(c.Roles, v.role) {
		return Claims{}, fmt.Errorf("%w: the token does not carry the app role %q", ErrInvalidToken, v.role)
	}
	app := c.AppID
	if app == "" {
		app = c.AZP
	}
	return Claims{AppID: app}, nil
}

// errNoKeyID refuses a token without kid: Entra always names its key, and trying every key of the set
// would let one bad token cost several RSA verifications.
var errNoKeyID = errors.New("token header has no kid")

func (v *Verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	kf := v.keys.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		if kid, ok := t.Header["kid"].(string); !ok || kid == "" {
			return nil, errNoKeyID
		}
		return kf(t)
	}
}

func (v *Verifier) keyCount(ctx context.Context) int {
	all, err := v.keys.Storage().KeyReadAll(ctx)
	if err != nil {
		return 0
	}
	return len(all)
}
