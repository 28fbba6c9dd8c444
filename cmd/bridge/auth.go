package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/entra"
)

// authOf builds the authentication of POSTs from the configuration and says what it accepts.
func authOf(ctx context.Context, cfg config.Config, log *slog.Logger) (bridge.Auth, error) {
	a := bridge.Auth{Tokens: cfg.AuthTokens, QueryParam: cfg.AuthQueryParam}
	if cfg.EntraEnabled() {
		v, err := entra.New(ctx, entra.Config{
			TenantID:   cfg.EntraTenantID,
			Audiences:  cfg.EntraAudience,
			Role:       cfg.EntraRole,
			KeysURL:    cfg.EntraKeysURL(),
			ClockSkew:  cfg.EntraClockSkew,
			Refresh:    cfg.EntraKeysRefresh,
			MinRefresh: cfg.EntraKeysMinRefresh,
		}, log)
		if err != nil {
			return a, fmt.Errorf("BRIDGE_ENTRA_*: %w", err)
		}
		a.Entra = v
	}
	switch {
	case cfg.AuthEnabled():
		attrs := []any{"tokens", len(cfg.AuthTokens)}
		if len(cfg.AuthTokens) > 0 && cfg.AuthQueryParam != "" {
			attrs = append(attrs, "query_param", cfg.AuthQueryParam)
		}
		if cfg.EntraEnabled() {
			attrs = append(attrs, "entra_tenant", cfg.EntraTenantID, "entra_audience", strings.Join(cfg.EntraAudience, ","))
		}
		log.Info("POSTs must authenticate", attrs...)
	case !loopback(cfg.ListenAddr):
		log.Warn("no authentication configured: anyone who reaches this address can publish; set BRIDGE_AUTH_TOKENS or BRIDGE_ENTRA_TENANT_ID", "addr", cfg.ListenAddr)
	}
	return a, nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// secretsOf lists the configured secrets the logger must never print.
func secretsOf(cfg config.Config) []string {
	secrets := append([]string{cfg.NATSPassword, cfg.NATSToken, cfg.NamespaceKey, cfg.RegistryPassword}, cfg.AuthTokens...)
	for _, raw := range strings.Split(cfg.NATSURL, ",") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.User != nil {
			p, _ := u.User.Password()
			secrets = append(secrets, p)
			if p == "" {
				secrets = append(secrets, u.User.Username()) // a token in the user part
			}
		}
	}
	kept := secrets[:0]
	for _, s := range secrets {
		// Very short values would blank out ordinary words; config validation keeps tokens long.
		if len(s) >= 4 {
			kept = append(kept, s)
		}
	}
	return kept
}

// redact returns a slog ReplaceAttr that blanks every secret in string and error values.
func redact(secrets []string) func([]string, slog.Attr) slog.Attr {
	if len(secrets) == 0 {
		return nil
	}
	return func(_ []string, a slog.Attr) slog.Attr {
		var s string
		switch a.Value.Kind() {
		case slog.KindString:
			s = a.Value.String()
		case slog.KindAny:
			err, ok := a.Value.Any().(error)
			if !ok {
				return a
			}
			s = err.Error()
		default:
			return a
		}
		changed := false
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				s, changed = strings.ReplaceAll(s, secret, "[REDACTED]"), true
			}
		}
		if changed {
			a.Value = slog.StringValue(s)
		}
		return a
	}
}
