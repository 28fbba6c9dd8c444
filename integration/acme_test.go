package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pebbleVersion is the release of Let's Encrypt's test CA the tests run.
const pebbleVersion = "v2.10.3"

// pebble is a running Let's Encrypt test CA.
type pebble struct {
	dirURL  string
	mgmtURL string
	// minica is pebble's own HTTPS root, for SSL_CERT_FILE.
	minica string
	client *http.Client
}

// acmeName is the name the tests get a certificate for; loopDNS resolves it to 127.0.0.1 for pebble.
const acmeName = "bridge.localhost"

// loopDNS is a DNS server on loopback, over TCP (as pebble asks) and UDP on one port, that answers A
// queries with 127.0.0.1 and any other query with no record: enough for pebble to find the bridge under
// acmeName.
func loopDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, addr)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					var size [2]byte
					if _, err := io.ReadFull(c, size[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(size[:]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					resp := dnsAnswer(q)
					if resp == nil {
						return
					}
					_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dnsAnswer answers one DNS query: 127.0.0.1 for type A, no record for any other type.
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	// The question: labels up to the root, then type and class.
	end := 12
	for end < len(q) && q[end] != 0 {
		end += int(q[end]) + 1
	}
	if end+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[end+1:])
	resp := append([]byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0}, q[12:end+5]...)
	if qtype == 1 { // A
		resp[7] = 1
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
	}
	return resp
}

// startPebble builds and runs pebble, validating TLS-ALPN-01 challenges on tlsPort of the address
// loopDNS gives (127.0.0.1).
func startPebble(t *testing.T, tlsPort int) *pebble {
	t.Helper()
	bin, src := buildFromModule(t, "github.com/letsencrypt/pebble/v2", pebbleVersion, "github.com/letsencrypt/pebble/v2/cmd/pebble")
	port, mgmt := freePort(t), freePort(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", port),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":                    filepath.Join(src, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(src, "test/certs/localhost/key.pem"),
		"httpPort":                       freePort(t),
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"profiles":                       map[string]any{"default": map[string]any{"description": "default", "validityPeriod": 7776000}},
	}}
	b, err := json.Marshal(conf)
	require.NoError(t, err)
	confFile := filepath.Join(t.TempDir(), "pebble.json")
	require.NoError(t, os.WriteFile(confFile, b, 0o600))
	// No random sleeps before validation, no nonces refused at random: the test is about the bridge.
	start(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}, bin, "-config", confFile, "-dnsserver", loopDNS(t))

	p := &pebble{dirURL: fmt.Sprintf("https://127.0.0.1:%d/dir", port), mgmtURL: fmt.Sprintf("https://127.0.0.1:%d", mgmt),
		minica: filepath.Join(src, "test/certs/pebble.minica.pem")}
	pem, err := os.ReadFile(p.minica)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	p.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	require.Eventually(t, func() bool {
		resp, err := p.client.Get(p.dirURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 50*time.Millisecond, "pebble did not serve")
	return p
}

// roots is the pool of the root pebble issues under (made anew at each start).
func (p *pebble) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmtURL + "/roots/0")
	require.NoError(t, err)
	defer resp.Body.Close()
	pem, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem), string(pem))
	return pool
}

// The bridge gets its certificate from an ACME CA (Let's Encrypt's pebble, run here) at start-up,
// answering the TLS-ALPN-01 challenge on its own listener, serves it, and serves no other name. A
// restart finds it in the cache.
func TestHTTPSFromACME(t *testing.T) {
	bridgePort := freePort(t)
	pb := startPebble(t, bridgePort)
	listen := fmt.Sprintf("127.0.0.1:%d", bridgePort)
	cache := t.TempDir()
	env := []string{"BRIDGE_LISTEN_ADDR=" + listen, "BRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0", "BRIDGE_EMBEDDED_NATS_DIR=" + t.TempDir(),
		"BRIDGE_ACME_DOMAINS=" + acmeName, "BRIDGE_ACME_CA=" + pb.dirURL, "BRIDGE_ACME_CACHE_DIR=" + cache,
		"BRIDGE_ACME_EMAIL=ops@bridge.test", "SSL_CERT_FILE=" + pb.minica}
	p := start(t, env, bridgeBin)
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "ACME certificate ready") }, 60*time.Second, 50*time.Millisecond, "%s", p.out)

	// acmeName is the bridge, here on loopback.
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, listen)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pb.roots(t)}, ForceAttemptHTTP2: true, DialContext: dial}}
	url := fmt.Sprintf("https://%s:%d", acmeName, bridgePort)
	resp, err := client.Post(url+"/eventgrid", "application/json", strings.NewReader(batchBody("acme", 0, 1)))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(body))
	assert.Equal(t, "h2", resp.TLS.NegotiatedProtocol)
	leaf := resp.TLS.PeerCertificates[0]
	assert.Equal(t, []string{acmeName}, leaf.DNSNames)
	assert.Contains(t, leaf.Issuer.CommonName, "Pebble")

	// A name not in BRIDGE_ACME_DOMAINS gets no certificate.
	_, err = tls.Dial("tcp", listen, &tls.Config{ServerName: "other." + acmeName, InsecureSkipVerify: true})
	assert.Error(t, err)

	// Restarted on the same cache: the certificate is there, no new order needed.
	p.stop(syscall.SIGTERM)
	p2 := start(t, env, bridgeBin)
	require.Eventually(t, func() bool { return strings.Contains(p2.out.String(), "ACME certificate ready") }, 30*time.Second, 50*time.Millisecond, "%s", p2.out)
	c, err := tls.Dial("tcp", listen, &tls.Config{ServerName: acmeName, RootCAs: pb.roots(t)})
	require.NoError(t, err)
	assert.Equal(t, leaf.SerialNumber, c.ConnectionState().PeerCertificates[0].SerialNumber, "the cached certificate")
	c.Close()
}
