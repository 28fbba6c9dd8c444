package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCA issues certificates for the tests' HTTPS listeners.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM leaf certificate (followed by the CA's, as a chain) and its PEM key, for
// 127.0.0.1 and localhost, with serial.
func (ca *testCA) issue(t testing.TB, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// secretVolume lays out a certificate as a Kubernetes Secret volume does: tls.crt and tls.key are links
// into ..data, itself a link to a timestamped directory; an update writes a new directory and swaps
// ..data atomically.
type secretVolume struct {
	t   *testing.T
	dir string
	n   int
}

func newSecretVolume(t *testing.T, certPEM, keyPEM []byte) *secretVolume {
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.update(certPEM, keyPEM)
	for _, f := range []string{"tls.crt", "tls.key"} {
		require.NoError(t, os.Symlink(filepath.Join("..data", f), filepath.Join(v.dir, f)))
	}
	return v
}

func (v *secretVolume) update(certPEM, keyPEM []byte) {
	v.n++
	ts := fmt.Sprintf("..2026_11_29_%02d", v.n)
	require.NoError(v.t, os.Mkdir(filepath.Join(v.dir, ts), 0o755))
	require.NoError(v.t, os.WriteFile(filepath.Join(v.dir, ts, "tls.crt"), certPEM, 0o600))
	require.NoError(v.t, os.WriteFile(filepath.Join(v.dir, ts, "tls.key"), keyPEM, 0o600))
	tmp := filepath.Join(v.dir, "..data_tmp")
	require.NoError(v.t, os.Symlink(ts, tmp))
	require.NoError(v.t, os.Rename(tmp, filepath.Join(v.dir, "..data")))
}

// servedSerial opens a new connection to addr and returns the serial of the certificate it is served.
func servedSerial(pool *x509.CertPool, addr string) (int64, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// The bridge serves HTTPS from a certificate and key in files: TLS 1.2 at least, HTTP/2 and HTTP/1.1,
// the whole chain. It follows the files as Kubernetes updates a Secret volume (a symlink swap) and as
// certbot renews (a rename over), with no restart and without dropping a keep-alive connection; a pair
// that does not load leaves the previous one in service and is logged naming the file.
func TestHTTPSFromFiles(t *testing.T) {
	ca := newTestCA(t)
	certA, keyA := ca.issue(t, 101)
	vol := newSecretVolume(t, certA, keyA)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, []string{"BRIDGE_LISTEN_ADDR=" + listen, "BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir(),
		"BRIDGE_TLS_CERT_FILE=" + filepath.Join(vol.dir, "tls.crt"), "BRIDGE_TLS_KEY_FILE=" + filepath.Join(vol.dir, "tls.key"),
		"BRIDGE_TLS_RELOAD_INTERVAL=200ms"}, bridgeBin)
	url := "https://" + listen

	// A keep-alive HTTP/2 client, opened on certificate A.
	kept := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true}}
	require.Eventually(t, func() bool {
		resp, err := kept.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 50*time.Millisecond, "%s", p.out)
	resp, err := kept.Post(url+"/eventgrid", "application/json", strings.NewReader(batchBody("https", 0, 2)))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(body))
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, "h2", resp.TLS.NegotiatedProtocol)
	assert.Equal(t, int64(101), resp.TLS.PeerCertificates[0].SerialNumber.Int64())
	require.Len(t, resp.TLS.PeerCertificates, 2, "the whole chain is served")

	// HTTP/1.1 alone, and TLS 1.2 alone, are served; TLS 1.1 is not; plain HTTP gets no answer of ours.
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, MaxVersion: tls.VersionTLS12}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	resp, err = h1.Get(url + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "HTTP/1.1", resp.Proto)
	assert.Equal(t, uint16(tls.VersionTLS12), resp.TLS.Version)
	_, err = tls.Dial("tcp", listen, &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
	assert.Error(t, err, "TLS 1.1 refused")
	if resp, err := http.Get("http://" + listen + "/healthz"); err == nil {
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP to an HTTPS listener")
		resp.Body.Close()
	}

	// bridge send posts over https, trusting a private CA with --ca or SSL_CERT_FILE.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.pem, 0o600))
	for _, tc := range []struct {
		args  []string
		env   string
		lines int // the handshake and each event
	}{
		{[]string{"send", "--url", url, "--ca", caFile, "--format", "eventgrid", "push", "delete"}, "", 3},
		{[]string{"send", "--url", url, "--format", "cloudevents", "push"}, "SSL_CERT_FILE=" + caFile, 2},
	} {
		send := exec.Command(bridgeBin, tc.args...)
		send.Env = append(os.Environ(), tc.env)
		out, err := send.CombinedOutput()
		require.NoError(t, err, string(out))
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Len(t, lines, tc.lines, "%s", out)
		for _, l := range lines {
			assert.Contains(t, l, " 200 ", "answered 200 over https")
		}
	}

	// The container health check finds the listener serving HTTPS.
	hc := exec.Command(bridgeBin, "healthcheck")
	hc.Env = append(os.Environ(), "BRIDGE_LISTEN_ADDR="+listen, "BRIDGE_TLS_CERT_FILE="+filepath.Join(vol.dir, "tls.crt"))
	out, err := hc.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "ready\n", string(out))

	// Kubernetes updates the Secret: a new directory, ..data swapped to it.
	certB, keyB := ca.issue(t, 102)
	vol.update(certB, keyB)
	require.Eventually(t, func() bool { s, err := servedSerial(ca.pool, listen); return err == nil && s == 102 }, 10*time.Second, 50*time.Millisecond)
	resp, err = kept.Get(url + "/healthz")
	require.NoError(t, err, "the keep-alive connection opened before the swap still serves")
	resp.Body.Close()
	assert.Equal(t, int64(101), resp.TLS.PeerCertificates[0].SerialNumber.Int64(), "on its own connection, not a new one")

	// A key that is not the certificate's: the previous pair stays in service, and the log says why.
	certC, _ := ca.issue(t, 103)
	_, keyOther := ca.issue(t, 104)
	vol.update(certC, keyOther)
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "TLS certificate not reloaded") }, 10*time.Second, 50*time.Millisecond)
	assert.Contains(t, p.out.String(), "the key does not match the certificate")
	s, err := servedSerial(ca.pool, listen)
	require.NoError(t, err)
	assert.Equal(t, int64(102), s)

	// certbot's way: new files written beside the old and renamed over them (here over the links).
	certD, keyD := ca.issue(t, 105)
	for name, content := range map[string][]byte{"tls.crt": certD, "tls.key": keyD} {
		tmp := filepath.Join(vol.dir, name+".new")
		require.NoError(t, os.WriteFile(tmp, content, 0o600))
		require.NoError(t, os.Rename(tmp, filepath.Join(vol.dir, name)))
	}
	require.Eventually(t, func() bool { s, err := servedSerial(ca.pool, listen); return err == nil && s == 105 }, 10*time.Second, 50*time.Millisecond)

	// And written in place.
	certE, keyE := ca.issue(t, 106)
	require.NoError(t, os.WriteFile(filepath.Join(vol.dir, "tls.key"), keyE, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(vol.dir, "tls.crt"), certE, 0o600))
	require.Eventually(t, func() bool { s, err := servedSerial(ca.pool, listen); return err == nil && s == 106 }, 10*time.Second, 50*time.Millisecond)
	assert.Equal(t, 3, strings.Count(p.out.String(), `"msg":"TLS certificate reloaded"`))
}

// Settings that cannot serve HTTPS stop start-up with a message naming the variable.
func TestHTTPSStartupErrors(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue(t, 1)
	_, otherKey := ca.issue(t, 2)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	certFile, keyFile, otherKeyFile := write("tls.crt", cert), write("tls.key", key), write("other.key", otherKey)
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"missing certificate", []string{"BRIDGE_TLS_CERT_FILE=" + filepath.Join(dir, "nope.crt"), "BRIDGE_TLS_KEY_FILE=" + keyFile}, "BRIDGE_TLS_CERT_FILE: certificate file"},
		{"unreadable key", []string{"BRIDGE_TLS_CERT_FILE=" + certFile, "BRIDGE_TLS_KEY_FILE=" + certFile}, "BRIDGE_TLS_KEY_FILE: key file"},
		{"key of another certificate", []string{"BRIDGE_TLS_CERT_FILE=" + certFile, "BRIDGE_TLS_KEY_FILE=" + otherKeyFile}, "BRIDGE_TLS_KEY_FILE: the key does not match the certificate"},
		{"half a pair", []string{"BRIDGE_TLS_CERT_FILE=" + certFile}, "BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE go together"},
		{"files and ACME", []string{"BRIDGE_TLS_CERT_FILE=" + certFile, "BRIDGE_TLS_KEY_FILE=" + keyFile, "BRIDGE_ACME_DOMAINS=bridge.example.com"}, "set one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(context.Background(), bridgeBin)
			cmd.Env = append(os.Environ(), append([]string{"BRIDGE_LISTEN_ADDR=127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0",
				"BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir()}, tc.env...)...)
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "start-up stops")
			assert.Contains(t, string(out), tc.want)
		})
	}
}
