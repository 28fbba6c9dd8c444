package lookup

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/natsbridge/acr-nats-bridge/internal/registrytest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// client returns a lookup client of r's host.
func client(t *testing.T, r *registrytest.Registry, opts Options) *Client {
	t.Helper()
	hosts, err := ParseHosts([]string{"*.example.com:" + r.Host[len("registry.example.com:"):]})
	require.NoError(t, err)
	opts.Hosts = hosts
	opts.HTTPClient = r.HTTPClient()
	return NewClient(opts)
}

// pushImage writes an image with a real client and returns its digest.
func pushImage(t *testing.T, r *registrytest.Registry, repo, tag string) string {
	t.Helper()
	return r.PushImage(t, repo, tag, nil).Digest.String()
}

func TestLookupFetchesAndCaches(t *testing.T) {
	r := registrytest.New(t)
	imgDigest := pushImage(t, r, "team/web", "v1")
	idxDigest := r.PushIndex(t, "team/web", "v2", []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}, false, nil).Digest.String()

	c := client(t, r, Options{Timeout: 5 * time.Second, Concurrency: 4, CacheSize: 10})
	ctx := context.Background()
	m, err := c.Lookup(ctx, r.Host, "team/web", imgDigest)
	require.NoError(t, err)
	require.NotNil(t, m.Config)
	assert.False(t, m.IsIndex())
	kind, effective := Kind("image", m)
	assert.Equal(t, "image", kind)
	assert.NotEmpty(t, effective)

	m, err = c.Lookup(ctx, r.Host, "team/web", idxDigest)
	require.NoError(t, err)
	assert.True(t, m.IsIndex())
	assert.Len(t, m.Manifests, 2)

	before := r.Requests.Load()
	_, err = c.Lookup(ctx, r.Host, "team/web", imgDigest)
	require.NoError(t, err)
	assert.Equal(t, before, r.Requests.Load(), "a manifest looked up once is not asked for again")
}

func TestLookupNotFound(t *testing.T) {
	r := registrytest.New(t)
	pushImage(t, r, "team/web", "v1")
	c := client(t, r, Options{Timeout: 5 * time.Second, Concurrency: 1, CacheSize: 10})
	missing := "sha256:" + fmt.Sprintf("%064x", 1)
	_, err := c.Lookup(context.Background(), r.Host, "team/web", missing)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = c.Lookup(context.Background(), r.Host, "no/such/repository", missing)
	assert.ErrorIs(t, err, ErrNotFound, "a repository that is gone")
}

// A host outside the list is never contacted: the registry sees no request.
func TestLookupRefusesOtherHosts(t *testing.T) {
	r := registrytest.New(t)
	d := pushImage(t, r, "team/web", "v1")
	c := client(t, r, Options{Timeout: 5 * time.Second, Concurrency: 1, CacheSize: 10})
	before := r.Requests.Load()
	for _, host := range []string{"evil.example.org", "127.0.0.1" + r.Host[len("registry.example.com"):], "registry.example.com", "a.registry.example.com" + r.Host[len("registry.example.com"):]} {
		_, err := c.Lookup(context.Background(), host, "team/web", d)
		assert.ErrorIs(t, err, ErrHostNotAllowed, host)
	}
	assert.Equal(t, before, r.Requests.Load())
}

func TestLookupBasicAuth(t *testing.T) {
	r := registrytest.New(t)
	d := pushImage(t, r, "team/web", "v1")
	r.RequireBasic("puller", "s3cret")
	anonymous := client(t, r, Options{Timeout: 5 * time.Second, Concurrency: 1, CacheSize: 10})
	_, err := anonymous.Lookup(context.Background(), r.Host, "team/web", d)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound, "refused credentials may pass: not a manifest that is gone")
	assert.NotContains(t, err.Error(), "s3cret")

	c := client(t, r, Options{Timeout: 5 * time.Second, Concurrency: 1, CacheSize: 10,
		Credential: auth.StaticCredential(r.Host, auth.Credential{Username: "puller", Password: "s3cret"})})
	m, err := c.Lookup(context.Background(), r.Host, "team/web", d)
	require.NoError(t, err)
	assert.NotNil(t, m.Config)
}

// A registry slower than the timeout fails the lookup in time, as a fault that may pass.
func TestLookupTimeout(t *testing.T) {
	r := registrytest.New(t)
	d := pushImage(t, r, "team/web", "v1")
	r.Delay.Store(int64(3 * time.Second))
	c := client(t, r, Options{Timeout: 200 * time.Millisecond, Concurrency: 1, CacheSize: 10})
	start := time.Now()
	_, err := c.Lookup(context.Background(), r.Host, "team/web", d)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
}

// No more lookups are under way at once than Concurrency.
func TestLookupConcurrencyBound(t *testing.T) {
	r := registrytest.New(t)
	r.Delay.Store(int64(50 * time.Millisecond))
	c := client(t, r, Options{Timeout: 10 * time.Second, Concurrency: 2, CacheSize: 10})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			_, err := c.Lookup(context.Background(), r.Host, "team/web", "sha256:"+fmt.Sprintf("%064x", i))
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
	wg.Wait()
	assert.Equal(t, int64(2), r.Most.Load(), "two at a time, and never more")
	assert.GreaterOrEqual(t, r.Requests.Load(), int64(8))
}
