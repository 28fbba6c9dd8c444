// Package registrytest runs a real OCI registry (go-containerregistry's) behind HTTPS for tests, records
// every manifest pushed to it as Azure Container Registry would report it, and pushes to it with real
// clients: go-containerregistry for images and indexes, oras-go for referrers and artifacts.
package registrytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/stretchr/testify/require"
)

// Registry is a real OCI registry behind HTTPS, its certificate issued by a CA of the test's own. It is
// reached as registry.example.com:<port> in-process (Transport dials it) and as localhost:<port> from
// another process (which trusts CAFile through SSL_CERT_FILE).
type Registry struct {
	// Host is registry.example.com:<port>, LocalHost localhost:<port>.
	Host, LocalHost string
	// Transport reaches Host and LocalHost, trusting the registry's CA.
	Transport *http.Transport
	// CAFile is the PEM file of the CA that issued the registry's certificate.
	CAFile string

	// Requests counts every request; InFlight and Most count those under way, for concurrency bounds.
	Requests, InFlight, Most atomic.Int64
	// Delay is how long each request waits first, in nanoseconds.
	Delay atomic.Int64

	intercept atomic.Pointer[func(http.ResponseWriter, *http.Request) bool]
	basic     atomic.Pointer[[2]string]

	mu     sync.Mutex
	pushes []Push
}

// Push is one manifest PUT the registry stored: what ACR's event for it carries.
type Push struct {
	Repository string
	// Tag is the reference it was pushed by when that is a tag; empty for a push by digest.
	Tag       string
	Digest    string
	MediaType string
	Size      int64
}

// New starts a registry for the test.
func New(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.Requests.Add(1)
		n := r.InFlight.Add(1)
		defer r.InFlight.Add(-1)
		for m := r.Most.Load(); n > m && !r.Most.CompareAndSwap(m, n); m = r.Most.Load() {
		}
		time.Sleep(time.Duration(r.Delay.Load()))
		if f := r.intercept.Load(); f != nil && (*f)(w, req) {
			return
		}
		if b := r.basic.Load(); b != nil {
			if u, p, ok := req.BasicAuth(); !ok || u != b[0] || p != b[1] {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") {
			r.recordPush(w, req, reg)
			return
		}
		reg.ServeHTTP(w, req)
	}))
	caPEM, cert := issue(t)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	r.Host, r.LocalHost = "registry.example.com:"+port, "localhost:"+port
	r.CAFile = filepath.Join(t.TempDir(), "registry-ca.pem")
	require.NoError(t, os.WriteFile(r.CAFile, caPEM, 0o600))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	addr := srv.Listener.Addr().String()
	r.Transport = &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(r.Transport.CloseIdleConnections)
	return r
}

// recordPush stores a manifest and, once the registry took it, records the push.
func (r *Registry) recordPush(w http.ResponseWriter, req *http.Request, reg http.Handler) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.Body = io.NopCloser(strings.NewReader(string(body)))
	// A registry with the referrers API (ACR has it) says so when it stores a manifest with a subject, so
	// that clients do not fall back to the referrers tag schema.
	var m struct {
		Subject *struct{ Digest string } `json:"subject"`
	}
	if json.Unmarshal(body, &m) == nil && m.Subject != nil {
		w.Header().Set("OCI-Subject", m.Subject.Digest)
	}
	rec := &statusRecorder{ResponseWriter: w}
	reg.ServeHTTP(rec, req)
	if rec.code/100 != 2 {
		return
	}
	v2 := strings.TrimPrefix(req.URL.Path, "/v2/")
	i := strings.LastIndex(v2, "/manifests/")
	repo, ref := v2[:i], v2[i+len("/manifests/"):]
	sum := sha256.Sum256(body)
	p := Push{Repository: repo, Digest: "sha256:" + hex.EncodeToString(sum[:]), MediaType: req.Header.Get("Content-Type"), Size: int64(len(body))}
	if !strings.Contains(ref, ":") {
		p.Tag = ref
	}
	r.mu.Lock()
	r.pushes = append(r.pushes, p)
	r.mu.Unlock()
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Pushes returns the manifest pushes since the last call, in the order the registry stored them.
func (r *Registry) Pushes() []Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pushes
	r.pushes = nil
	return p
}

// Intercept sees every request first (nil: none) and reports whether it answered it.
func (r *Registry) Intercept(f func(http.ResponseWriter, *http.Request) bool) {
	if f == nil {
		r.intercept.Store(nil)
		return
	}
	r.intercept.Store(&f)
}

// RequireBasic makes every request carry these credentials (empty user: none needed).
func (r *Registry) RequireBasic(user, password string) {
	if user == "" {
		r.basic.Store(nil)
		return
	}
	r.basic.Store(&[2]string{user, password})
}

// Basic returns the credentials RequireBasic set.
func (r *Registry) Basic() (user, password string) {
	if b := r.basic.Load(); b != nil {
		return b[0], b[1]
	}
	return "", ""
}

// HTTPClient reaches the registry.
func (r *Registry) HTTPClient() *http.Client { return &http.Client{Transport: r.Transport} }

// issue makes a CA and a certificate it signs for registry.example.com and localhost.
func issue(t testing.TB) (caPEM []byte, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registry test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "registry.example.com"},
		DNSNames: []string{"registry.example.com", "localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
