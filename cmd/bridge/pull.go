package main

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/namespace"
)

// newPuller builds the puller of BRIDGE_NAMESPACE_*: the shared access key when one is set, else
// Microsoft Entra ID through the Azure SDK's default credential chain (workload identity, managed
// identity, environment, Azure CLI). The SDK's client trusts the system roots, or SSL_CERT_FILE.
func newPuller(cfg config.Config, getenv environment, d namespace.Deliverer, budget *bridge.Server, reg prometheus.Registerer, log *slog.Logger) (*namespace.Puller, error) {
	opts := namespace.Options{
		Endpoint:     cfg.NamespaceEndpoint,
		Topic:        cfg.NamespaceTopic,
		Subscription: cfg.NamespaceSubscription,
		Key:          cfg.NamespaceKey,
		Receivers:    cfg.NamespaceReceivers,
		MaxEvents:    cfg.NamespaceMaxEvents,
		MaxWait:      cfg.NamespaceMaxWait,
		ReleaseDelay: cfg.NamespaceReleaseDelay,
		// A batch's delivery waits up to the publish timeout; its settlement gets as long again.
		SettleTimeout: 2 * cfg.PublishTimeout,
		MaxJSONDepth:  cfg.MaxJSONDepth,
		// Pulled batches and pushed bodies share BRIDGE_MAX_INFLIGHT_BYTES.
		Budget: budget,
	}
	if opts.Key == "" {
		cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			DisableInstanceDiscovery: privateAuthority(getenv.or("AZURE_AUTHORITY_HOST", "")),
		})
		if err != nil {
			return nil, fmt.Errorf("BRIDGE_NAMESPACE_KEY is empty and no Microsoft Entra ID credential is available: %w", err)
		}
		opts.Credential = cred
	}
	p, err := namespace.New(opts, d, reg, log.With("component", "namespace"))
	if err != nil {
		return nil, fmt.Errorf("BRIDGE_NAMESPACE_*: %w", err)
	}
	return p, nil
}

// privateAuthority reports whether AZURE_AUTHORITY_HOST names an authority other than Azure's public and
// national clouds' (a private or disconnected cloud such as Azure Stack). MSAL checks an unknown authority
// with the public cloud's instance discovery, which such a cloud cannot reach; azidentity's
// DisableInstanceDiscovery is documented for exactly these.
func privateAuthority(host string) bool {
	if host == "" {
		return false
	}
	u, err := url.Parse(host)
	if err != nil {
		return false
	}
	for _, c := range []cloud.Configuration{cloud.AzurePublic, cloud.AzureGovernment, cloud.AzureChina} {
		if known, err := url.Parse(c.ActiveDirectoryAuthorityHost); err == nil && strings.EqualFold(known.Host, u.Host) {
			return false
		}
	}
	return true
}
