package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	"github.com/natsbridge/acr-nats-bridge/config"
	"github.com/natsbridge/acr-nats-bridge/tlscert"
)

// certificates is how the listener gets its certificates when it serves HTTPS.
type certificates struct {
	config *tls.Config
	// start, when set, runs once the listener serves, until ctx ends: it watches the files, or asks the
	// CA for the certificates.
	start func(ctx context.Context)
}

// newCertificates returns the HTTPS setup of the configuration: files read again when they change, or
// certificates from an ACME CA; nil for plain HTTP. A pair of files that does not load stops start-up,
// naming the variable.
func newCertificates(cfg config.Config, log *slog.Logger) (*certificates, error) {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
	switch {
	case cfg.TLSFiles():
		files, err := tlscert.LoadFiles(cfg.TLSCertFile, cfg.TLSKeyFile, log)
		var fe *tlscert.FileError
		if errors.As(err, &fe) {
			name := map[string]string{"cert": "BRIDGE_TLS_CERT_FILE", "key": "BRIDGE_TLS_KEY_FILE", "pair": "BRIDGE_TLS_KEY_FILE"}[fe.Which]
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err != nil {
			return nil, err
		}
		leaf := files.Current().Leaf
		log.Info("serving HTTPS with a certificate from files", "cert_file", cfg.TLSCertFile, "dns_names", leaf.DNSNames,
			"not_after", leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), "reload_interval", cfg.TLSReloadInterval.String())
		base.GetCertificate = files.GetCertificate
		return &certificates{config: base, start: func(ctx context.Context) { files.Watch(ctx, cfg.TLSReloadInterval) }}, nil
	case cfg.ACMEEnabled():
		return acmeCertificates(cfg, base, log)
	}
	return nil, nil
}
