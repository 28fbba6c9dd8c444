// Package tlscert provides the bridge's HTTPS certificates: a certificate and key from files, read again
// when they change on disk, or certificates an ACME CA issues and renews.
package tlscert

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// FileError says which of the files could not be used: "cert", "key", or "pair" when each reads but the
// key is not the certificate's.
type FileError struct {
	Which string
	Path  string
	Err   error
}

func (e *FileError) Error() string {
	switch e.Which {
	case "pair":
		return fmt.Sprintf("the key does not match the certificate %s: %v", e.Path, e.Err)
	case "key":
		return fmt.Sprintf("key file %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("certificate file %s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Files serves a certificate and key read from two PEM files. Watch reads them again when their content
// changes, however it changed: written in place, renamed over, or swapped under a symbolic link (the
// "..data" link of a Kubernetes Secret volume). A pair that does not load leaves the previous one in
// service, so that a half-written rotation never breaks the listener.
type Files struct {
	certFile, keyFile string
	log               *slog.Logger

	current atomic.Pointer[tls.Certificate]
	// seen is the digest of the last pair read, loaded or refused, so that each change is acted on once.
	seen [sha256.Size]byte
}

// LoadFiles reads the pair for the first time; an error is a *FileError.
func LoadFiles(certFile, keyFile string, log *slog.Logger) (*Files, error) {
	f := &Files{certFile: certFile, keyFile: keyFile, log: log}
	certPEM, keyPEM, err := f.read()
	if err != nil {
		return nil, err
	}
	cert, err := f.load(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	f.seen = digest(certPEM, keyPEM)
	f.current.Store(cert)
	return f, nil
}

// GetCertificate serves the pair in service; it is tls.Config.GetCertificate.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.current.Load(), nil
}

// Current is the certificate in service.
func (f *Files) Current() *tls.Certificate { return f.current.Load() }

// Watch checks the files every interval until ctx ends, and puts a changed pair in service once it loads.
func (f *Files) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.Reload()
		}
	}
}

// Reload reads the files and, if their content changed since the last read, loads the pair: in service
// when it loads, logged as an error naming the file when it does not. It reports whether a new pair went
// into service.
func (f *Files) Reload() bool {
	certPEM, keyPEM, err := f.read()
	if err != nil {
		// A file missing for a moment (mid-rename) is retried at the next check; logged once per content.
		d := sha256.Sum256([]byte(err.Error()))
		if d != f.seen {
			f.seen = d
			f.log.Error("TLS certificate not reloaded; the previous one stays in service", "error", err.Error())
		}
		return false
	}
	d := digest(certPEM, keyPEM)
	if d == f.seen {
		return false
	}
	f.seen = d
	cert, err := f.load(certPEM, keyPEM)
	if err != nil {
		f.log.Error("TLS certificate not reloaded; the previous one stays in service", "error", err.Error())
		return false
	}
	f.current.Store(cert)
	f.log.Info("TLS certificate reloaded", "cert_file", f.certFile, "subject", cert.Leaf.Subject.String(),
		"dns_names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return true
}

func (f *Files) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(f.certFile); err != nil {
		return nil, nil, &FileError{"cert", f.certFile, err}
	}
	if keyPEM, err = os.ReadFile(f.keyFile); err != nil {
		return nil, nil, &FileError{"key", f.keyFile, err}
	}
	return certPEM, keyPEM, nil
}

// load parses the pair, telling apart a bad certificate, a bad key and a key of another certificate (by
// crypto/tls's wording: it has no error types for these).
func (f *Files) load(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case err == nil:
		return &cert, nil
	case strings.Contains(msg, "does not match"):
		return nil, &FileError{"pair", f.certFile, err}
	case strings.Contains(msg, "key input"), strings.Contains(msg, "private key"):
		return nil, &FileError{"key", f.keyFile, err}
	}
	return nil, &FileError{"cert", f.certFile, err}
}

func digest(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
