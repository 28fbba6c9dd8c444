package main

import (
	"crypto/tls"
	"errors"
	"log/slog"

	"github.com/natsbridge/acr-nats-bridge/config"
)

// acmeCertificates is filled in by the ACME support.
func acmeCertificates(cfg config.Config, base *tls.Config, log *slog.Logger) (*certificates, error) {
	return nil, errors.New("BRIDGE_ACME_DOMAINS: not supported yet")
}
