package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/prometheus/client_golang/prometheus"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/lookup"
)

// newLookups returns the registry lookups' client (BRIDGE_REGISTRY_*), or nil when lookups are off.
// Requests go over HTTPS to the allowed hosts only, trusting the system's roots (SSL_CERT_FILE adds a
// private CA).
func newLookups(cfg config.Config, getenv environment, reg prometheus.Registerer, log *slog.Logger) (bridge.Registry, error) {
	metrics := lookup.NewMetrics(reg) // registered also when off, so that dashboards see 0
	if !cfg.LookupsEnabled() {
		return nil, nil
	}
	hosts, err := lookup.ParseHosts(cfg.RegistryHosts)
	if err != nil {
		return nil, fmt.Errorf("BRIDGE_REGISTRY_HOSTS: %w", err)
	}
	// As many idle connections kept per registry as lookups may run at once, so that a busy spell does
	// not pay a TLS handshake per lookup.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.RegistryLookupConcurrency
	hc := &http.Client{Transport: tr}
	opts := lookup.Options{
		Hosts:       hosts,
		HTTPClient:  hc,
		Timeout:     cfg.RegistryLookupTimeout,
		Concurrency: cfg.RegistryLookupConcurrency,
		CacheSize:   cfg.RegistryLookupCacheSize,
		Metrics:     metrics,
	}
	switch cfg.RegistryAuth {
	case "basic":
		opts.Credential = func(_ context.Context, _ string) (auth.Credential, error) {
			return auth.Credential{Username: cfg.RegistryUsername, Password: cfg.RegistryPassword}, nil
		}
	case "entra":
		cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			DisableInstanceDiscovery: privateAuthority(getenv.or("AZURE_AUTHORITY_HOST", "")),
		})
		if err != nil {
			return nil, fmt.Errorf("BRIDGE_REGISTRY_AUTH=entra but no Microsoft Entra ID credential is available: %w", err)
		}
		opts.Credential = lookup.ACRCredential(cred, hc)
	}
	log.Info("registry lookups on", "mode", cfg.RegistryLookup, "hosts", strings.Join(cfg.RegistryHosts, ","),
		"auth", cfg.RegistryAuth, "timeout", cfg.RegistryLookupTimeout.String(), "concurrency", cfg.RegistryLookupConcurrency)
	return lookup.NewClient(opts), nil
}
