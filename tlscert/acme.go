package tlscert

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACME gets certificates for a fixed list of names from an ACME CA and renews them, answering the CA's
// TLS-ALPN-01 challenges on the listener it serves (so it must be reachable on :443). It is autocert's
// Manager: account and certificates kept in a directory, renewal before expiry, only the listed names.
type ACME struct {
	manager *autocert.Manager
	domains []string
	log     *slog.Logger
}

// NewACME returns the certificate source for domains from the directory URL ca, keeping its state in
// cacheDir, with email as the account's contact. The CA's HTTPS is trusted by the system roots (or
// SSL_CERT_FILE).
func NewACME(domains []string, email, ca, cacheDir string, log *slog.Logger) *ACME {
	return &ACME{
		manager: &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(domains...),
			Cache:      autocert.DirCache(cacheDir),
			Email:      email,
			Client:     &acme.Client{DirectoryURL: ca},
		},
		domains: domains,
		log:     log,
	}
}

// GetCertificate serves a name's certificate, getting it first if need be, and answers TLS-ALPN-01
// challenges; it is tls.Config.GetCertificate.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return a.manager.GetCertificate(hello)
}

// NextProtos are the protocols the listener offers: HTTP/2, HTTP/1.1, and the ACME challenge's.
func (a *ACME) NextProtos() []string { return a.manager.TLSConfig().NextProtos }

// Obtain gets (or loads from the cache) the certificate of every name now, rather than on the first
// handshake, so that Event Grid's validation handshake never waits on the CA. Call it once the listener
// serves: the CA connects to it to validate. A name that fails is retried with backoff until ctx ends.
// It returns when every name has its certificate or ctx has ended, and a request to the CA under way has
// returned.
func (a *ACME) Obtain(ctx context.Context) {
	var wg sync.WaitGroup
	for _, d := range a.domains {
		wg.Go(func() { a.obtain(ctx, d) })
	}
	wg.Wait()
}

func (a *ACME) obtain(ctx context.Context, domain string) {
	// A hello such as any current client sends, so that the ECDSA certificate, autocert's first
	// choice, is the one obtained.
	hello := &tls.ClientHelloInfo{
		ServerName:       domain,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
	for wait := 10 * time.Second; ; wait = min(2*wait, 10*time.Minute) {
		start := time.Now()
		cert, err := a.manager.GetCertificate(hello)
		if err == nil {
			attrs := []any{"domain", domain, "duration_ms", time.Since(start).Milliseconds()}
			if cert.Leaf != nil {
				attrs = append(attrs, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "issuer", cert.Leaf.Issuer.CommonName)
			}
			a.log.Info("ACME certificate ready", attrs...)
			return
		}
		a.log.Error("ACME certificate not obtained; retrying", "domain", domain, "error", err.Error(), "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
