package registrytest

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
)

// RequireACRToken makes the registry speak Azure Container Registry's authentication, as its
// documentation gives it: a bearer challenge naming its /oauth2/token, the exchange of a Microsoft Entra
// access token (verify checks it) for a refresh token at /oauth2/exchange, and of that refresh token for
// an access token at /oauth2/token. It returns the count of exchanges made. Push what the test needs
// first: the pushers do not speak it.
func (r *Registry) RequireACRToken(verify func(ctx context.Context, token string) error) (exchanges *atomic.Int64) {
	exchanges = &atomic.Int64{}
	const refresh, access = "acr-refresh-token", "acr-access-token"
	r.Intercept(func(w http.ResponseWriter, req *http.Request) bool {
		switch {
		case req.Method == http.MethodPost && req.URL.Path == "/oauth2/exchange":
			_ = req.ParseForm()
			if req.PostForm.Get("grant_type") != "access_token" || req.PostForm.Get("service") != req.Host {
				http.Error(w, `{"errors":[{"code":"UNSUPPORTED"}]}`, http.StatusBadRequest)
				return true
			}
			if err := verify(req.Context(), req.PostForm.Get("access_token")); err != nil {
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid AAD token"}]}`, http.StatusUnauthorized)
				return true
			}
			exchanges.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"refresh_token":"` + refresh + `"}`))
		case req.Method == http.MethodPost && req.URL.Path == "/oauth2/token":
			_ = req.ParseForm()
			if req.PostForm.Get("grant_type") != "refresh_token" || req.PostForm.Get("refresh_token") != refresh ||
				!strings.HasPrefix(req.PostForm.Get("scope"), "repository:") {
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
				return true
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"` + access + `"}`))
		case req.Header.Get("Authorization") != "Bearer "+access:
			repo := strings.TrimPrefix(req.URL.Path, "/v2/")
			if i := strings.Index(repo, "/manifests/"); i >= 0 {
				repo = repo[:i]
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="https://`+req.Host+`/oauth2/token",service="`+req.Host+`",scope="repository:`+repo+`:pull"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		default:
			return false // authorised: the registry answers
		}
		return true
	})
	return exchanges
}
