package lookup

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// testRegistry is a real OCI registry (go-containerregistry's) behind HTTPS, reached by the name
// registry.example.com:<port>, which its test certificate covers.
type testRegistry struct {
	host      string
	transport *http.Transport
	requests  atomic.Int64
	// inFlight and most count the requests under way, for the concurrency bound.
	inFlight, most atomic.Int64
	delay          atomic.Int64 // nanoseconds each request waits first
	user, password string       // when set, every request must carry them
	// intercept, when set, sees each request first and reports whether it answered it.
	intercept atomic.Pointer[func(http.ResponseWriter, *http.Request) bool]
}

func newTestRegistry(t *testing.T, user, password string) *testRegistry {
	t.Helper()
	r := &testRegistry{user: user, password: password}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		n := r.inFlight.Add(1)
		defer r.inFlight.Add(-1)
		for m := r.most.Load(); n > m && !r.most.CompareAndSwap(m, n); m = r.most.Load() {
		}
		time.Sleep(time.Duration(r.delay.Load()))
		if f := r.intercept.Load(); f != nil && (*f)(w, req) {
			return
		}
		if r.user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.password {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	r.host = "registry.example.com:" + port
	r.transport = srv.Client().Transport.(*http.Transport).Clone()
	r.transport.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	return r
}

func (r *testRegistry) client(t *testing.T, opts Options) *Client {
	t.Helper()
	hosts, err := ParseHosts([]string{"*.example.com:" + r.host[len("registry.example.com:"):]})
	require.NoError(t, err)
	opts.Hosts = hosts
	opts.HTTPClient = &http.Client{Transport: r.transport}
	return NewClient(opts)
}

// push writes an image with a real client and returns its digest.
func (r *testRegistry) pushImage(t *testing.T, repo, tag string) v1.Hash {
	t.Helper()
	img, err := random.Image(256, 1)
	require.NoError(t, err)
	ref, err := name.ParseReference(r.host + "/" + repo + ":" + tag)
	require.NoError(t, err)
	opts := []remote.Option{remote.WithTransport(r.transport)}
	require.NoError(t, remote.Write(ref, img, opts...))
	d, err := img.Digest()
	require.NoError(t, err)
	return d
}

func TestLookupFetchesAndCaches(t *testing.T) {
	r := newTestRegistry(t, "", "")
	imgDigest := r.pushImage(t, "team/web", "v1")
	idx, err := random.Index(128, 1, 2)
	require.NoError(t, err)
	idxRef, err := name.ParseReference(r.host + "/team/web:v2")
	require.NoError(t, err)
	require.NoError(t, remote.WriteIndex(idxRef, idx, remote.WithTransport(r.transport)))
	idxDigest, err := idx.Digest()
	require.NoError(t, err)

	c := r.client(t, Options{Timeout: 5 * time.Second, Concurrency: 4, CacheSize: 10})
	ctx := context.Background()
	m, err := c.Lookup(ctx, r.host, "team/web", imgDigest.String())
	require.NoError(t, err)
	require.NotNil(t, m.Config)
	assert.False(t, m.IsIndex())
	kind, effective := Kind("image", m)
	assert.Equal(t, "image", kind)
	assert.NotEmpty(t, effective)

	m, err = c.Lookup(ctx, r.host, "team/web", idxDigest.String())
	require.NoError(t, err)
	assert.True(t, m.IsIndex())
	assert.Len(t, m.Manifests, 2)

	before := r.requests.Load()
	_, err = c.Lookup(ctx, r.host, "team/web", imgDigest.String())
	require.NoError(t, err)
	assert.Equal(t, before, r.requests.Load(), "a manifest looked up once is not asked for again")
}

func TestLookupNotFound(t *testing.T) {
	r := newTestRegistry(t, "", "")
	r.pushImage(t, "team/web", "v1")
	c := r.client(t, Options{Timeout: 5 * time.Second, Concurrency: 1, CacheSize: 10})
	missing := "sha256:" + fmt.Sprintf("%064x", 1)
	_, err := c.Lookup(context.Background(), r.host, "team/web", missing)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = c.Lookup(context.Background(), r.host, "no/such/repository", missing)
	assert.ErrorIs(t, err, ErrNotFound, "a repository that is gone")
}

// A host outside the list is never contacted: the registry sees no request.
func TestLookupRefusesOtherHosts(t *testing.T) {
	r := newTestRegistry(t, "", "")
	d := r.pushImage(t, "team/web", "v1")
	c := r.client(t, Options{Timeout: 5 * time.Second, Concurrency: 1, CacheSize: 10})
	before := r.requests.Load()
	for _, host := range []string{"evil.example.org", "127.0.0.1" + r.host[len("registry.example.com"):], "registry.example.com", "a.registry.example.com" + r.host[len("registry.example.com"):]} {
		_, err := c.Lookup(context.Background(), host, "team/web", d.String())
		assert.ErrorIs(t, err, ErrHostNotAllowed, host)
	}
	assert.Equal(t, before, r.requests.Load())
}

func TestLookupBasicAuth(t *testing.T) {
	r := newTestRegistry(t, "", "")
	d := r.pushImage(t, "team/web", "v1")
	r.user, r.password = "puller", "s3cret"
	anonymous := r.client(t, Options{Timeout: 5 * time.Second, Concurrency: 1, CacheSize: 10})
	_, err := anonymous.Lookup(context.Background(), r.host, "team/web", d.String())
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound, "refused credentials may pass: not a manifest that is gone")
	assert.NotContains(t, err.Error(), "s3cret")

	c := r.client(t, Options{Timeout: 5 * time.Second, Concurrency: 1, CacheSize: 10,
		Credential: auth.StaticCredential(r.host, auth.Credential{Username: "puller", Password: "s3cret"})})
	m, err := c.Lookup(context.Background(), r.host, "team/web", d.String())
	require.NoError(t, err)
	assert.NotNil(t, m.Config)
}

// A registry slower than the timeout fails the lookup in time, as a fault that may pass.
func TestLookupTimeout(t *testing.T) {
	r := newTestRegistry(t, "", "")
	d := r.pushImage(t, "team/web", "v1")
	r.delay.Store(int64(3 * time.Second))
	c := r.client(t, Options{Timeout: 200 * time.Millisecond, Concurrency: 1, CacheSize: 10})
	start := time.Now()
	_, err := c.Lookup(context.Background(), r.host, "team/web", d.String())
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
}

// No more lookups are under way at once than Concurrency.
func TestLookupConcurrencyBound(t *testing.T) {
	r := newTestRegistry(t, "", "")
	r.delay.Store(int64(50 * time.Millisecond))
	c := r.client(t, Options{Timeout: 10 * time.Second, Concurrency: 2, CacheSize: 10})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_, err := c.Lookup(context.Background(), r.host, "team/web", "sha256:"+fmt.Sprintf("%064x", i))
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
	wg.Wait()
	assert.Equal(t, int64(2), r.most.Load(), "two at a time, and never more")
	assert.GreaterOrEqual(t, r.requests.Load(), int64(8))
}
