package lookup

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// acrScope is the Microsoft Entra resource of Azure Container Registry's data plane.
const acrScope = "https://containerregistry.azure.net/.default"

// ACRCredential answers an Azure Container Registry's challenge with Microsoft Entra ID, by ACR's
// documented token exchange: an Entra access token for the registry's resource, exchanged at the
// registry's /oauth2/exchange for an ACR refresh token, which the registry client then trades at the
// registry's /oauth2/token for an access token per repository. The identity needs AcrPull. The refresh
// token is kept per registry until shortly before it expires, so an exchange is rare. hc makes the
// exchange requests (nil is http.DefaultClient).
func ACRCredential(cred azcore.TokenCredential, hc *http.Client) auth.CredentialFunc {
	if hc == nil {
		hc = http.DefaultClient
	}
	x := &exchanger{cred: cred, hc: hc, tokens: map[string]refreshToken{}}
	return x.credential
}

type exchanger struct {
	cred azcore.TokenCredential
	hc   *http.Client

	mu     sync.Mutex
	tokens map[string]refreshToken
}

type refreshToken struct {
	token   string
	renewAt time.Time
}

func (x *exchanger) credential(ctx context.Context, hostport string) (auth.Credential, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t, ok := x.tokens[hostport]; ok && time.Now().Before(t.renewAt) {
		return auth.Credential{RefreshToken: t.token}, nil
	}
	aad, err := x.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}})
	if err != nil {
		return auth.Credential{}, fmt.Errorf("Microsoft Entra ID token for %s: %w", hostport, err)
	}
	rt, err := x.exchange(ctx, hostport, aad.Token)
	if err != nil {
		return auth.Credential{}, err
	}
	x.tokens[hostport] = refreshToken{token: rt, renewAt: renewAt(rt, time.Now())}
	return auth.Credential{RefreshToken: rt}, nil
}

// exchange trades an Entra access token for the registry's refresh token.
func (x *exchanger) exchange(ctx context.Context, hostport, aadToken string) (string, error) {
	form := url.Values{"grant_type": {"access_token"}, "service": {hostport}, "access_token": {aadToken}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+hostport+"/oauth2/exchange", strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("token exchange with %s: %w", hostport, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := x.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("token exchange with %s: %w", hostport, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		// The body is the registry's error, which names no token.
		return "", fmt.Errorf("token exchange with %s answered %d: %s (the identity needs AcrPull on the registry)",
			hostport, resp.StatusCode, strings.Join(strings.Fields(string(body[:min(len(body), 300)])), " "))
	}
	var r struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.RefreshToken == "" {
		return "", fmt.Errorf("token exchange with %s: no refresh token in the answer", hostport)
	}
	return r.RefreshToken, nil
}

// renewAt is when a refresh token is to be exchanged again: five minutes before the expiry its JWT
// claims (ACR's last three hours), or an hour from now when it names none.
func renewAt(token string, now time.Time) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) == 3 {
		var claims struct {
			Exp int64 `json:"exp"`
		}
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil && json.Unmarshal(b, &claims) == nil && claims.Exp > 0 {
			return time.Unix(claims.Exp, 0).Add(-5 * time.Minute)
		}
	}
	return now.Add(time.Hour)
}
