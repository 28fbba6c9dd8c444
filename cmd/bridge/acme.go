package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"

	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/tlscert"
)

// acmeCertificates serves the certificates of BRIDGE_ACME_DOMAINS from BRIDGE_ACME_CA, asked for once
// the listener serves, since the CA validates through it.
func acmeCertificates(cfg config.Config, base *tls.Config, log *slog.Logger) (*certificates, error) {
	if err := os.MkdirAll(cfg.ACMECacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("BRIDGE_ACME_CACHE_DIR: %w", err)
	}
	a := tlscert.NewACME(cfg.ACMEDomains, cfg.ACMEEmail, cfg.ACMECA, cfg.ACMECacheDir, log.With("component", "acme"))
	base.GetCertificate = a.GetCertificate
	base.NextProtos = a.NextProtos()
	log.Info("serving HTTPS with certificates from an ACME CA", "domains", cfg.ACMEDomains, "ca", cfg.ACMECA, "cache_dir", cfg.ACMECacheDir)
	return &certificates{config: base, start: a.Obtain}, nil
}
