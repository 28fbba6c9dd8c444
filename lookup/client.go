package lookup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// ErrHostNotAllowed is a lookup refused before any request: the event names a registry host that
// BRIDGE_REGISTRY_HOSTS does not list.
var ErrHostNotAllowed = errors.New("registry host not allowed")

// ErrNotFound is a manifest the registry does not have (any 404, its repository's included): gone
// already, so no retry can find it.
var ErrNotFound = errors.New("manifest not found")

// maxManifestBytes bounds the manifest read: OCI's own limit for a manifest a registry must accept.
const maxManifestBytes = 4 << 20

// Options say which registries a Client may ask and how.
type Options struct {
	// Hosts are the registry hosts lookups may go to; any other is refused with ErrHostNotAllowed.
	Hosts Hosts
	// Credential answers a registry's challenge; nil is anonymous.
	Credential auth.CredentialFunc
	// HTTPClient makes the requests, over HTTPS only; nil is http.DefaultClient, which trusts the system
	// roots (SSL_CERT_FILE for a private CA).
	HTTPClient *http.Client
	// Timeout bounds one lookup, waiting for a slot included.
	Timeout time.Duration
	// Concurrency is how many lookups may be under way at once.
	Concurrency int
	// CacheSize is how many manifests are kept, by digest.
	CacheSize int
	// Metrics counts the lookups; nil counts nothing.
	Metrics *Metrics
}

// Client fetches pushed manifests by digest. A manifest never changes, so what it fetched is kept by
// digest: a redelivery, or the same push through another channel, costs no request.
type Client struct {
	opts  Options
	auth  *auth.Client
	slots chan struct{}

	// flight makes one request for the lookups of a manifest that arrive while it is being fetched (the
	// same push through two channels, a batch that names it twice).
	flight singleflight.Group

	mu    sync.Mutex
	cache map[string]*Manifest
	order []string // the cached digests, oldest first
}

// NewClient returns a client with opts.
func NewClient(opts Options) *Client {
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{
		opts:  opts,
		auth:  &auth.Client{Client: hc, Credential: opts.Credential, Cache: auth.NewCache()},
		slots: make(chan struct{}, max(opts.Concurrency, 1)),
		cache: map[string]*Manifest{},
	}
}

var (
	// digestRE is an OCI digest of the algorithms registries use.
	digestRE = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
	// repositoryRE is the OCI distribution spec's repository name grammar.
	repositoryRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
)

// Lookup fetches the manifest digest of repository from the registry at host (an event's request.host),
// by GET /v2/{repository}/manifests/{digest} over HTTPS with an Accept header naming the OCI and Docker
// manifest and index media types. A host outside Options.Hosts is refused before the cache is asked.
//
// The manifest returned is shared with the cache and other callers: read it, never change it.
func (c *Client) Lookup(ctx context.Context, host, repository, digest string) (*Manifest, error) {
	m, err := c.lookup(ctx, host, repository, digest)
	c.opts.Metrics.count(err)
	return m, err
}

// Ref names a manifest to look up: an event's registry host, repository and digest.
type Ref struct {
	Host, Repository, Digest string
}

// Result is what the lookup of one Ref found: its manifest, or why not.
type Result struct {
	Manifest *Manifest
	Err      error
}

// LookupAll looks refs up at once, as Lookup does each: those the cache holds (or that are refused) are
// answered at once, the others fetched concurrently, Concurrency at a time. The results are in the order
// of refs.
func (c *Client) LookupAll(ctx context.Context, refs []Ref) []Result {
	res := make([]Result, len(refs))
	var wg sync.WaitGroup
	first := -1 // the first to fetch, fetched here once the others are under way
	for i, r := range refs {
		if q, ok := c.quick(r.Host, r.Digest); ok {
			c.opts.Metrics.count(q.Err)
			res[i] = q
			continue
		}
		if first < 0 {
			first = i
			continue
		}
		wg.Go(func() { res[i].Manifest, res[i].Err = c.Lookup(ctx, r.Host, r.Repository, r.Digest) })
	}
	if first >= 0 {
		r := refs[first]
		res[first].Manifest, res[first].Err = c.Lookup(ctx, r.Host, r.Repository, r.Digest)
	}
	wg.Wait()
	return res
}

func (c *Client) lookup(ctx context.Context, host, repository, digest string) (*Manifest, error) {
	if q, ok := c.quick(host, digest); ok {
		return q.Manifest, q.Err
	}
	if !digestRE.MatchString(digest) || !repositoryRE.MatchString(repository) {
		return nil, fmt.Errorf("%w: %q@%q is no manifest reference", ErrNotFound, repository, digest)
	}
	key := strings.ToLower(host) + "/" + repository + "@" + digest
	ch := c.flight.DoChan(key, func() (any, error) {
		// Not the caller's context: the request is shared with every lookup of the same manifest, so the
		// first caller leaving must not cancel it. The timeout bounds it.
		return c.request(context.WithoutCancel(ctx), host, repository, digest)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Manifest), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("lookup %s/%s@%s: %w", host, repository, digest, ctx.Err())
	}
}

// quick answers a lookup that needs no request: a host not allowed, or a manifest in the cache. Only valid
// digests are cached, so a hit needs no check of the reference; a request does.
func (c *Client) quick(host, digest string) (Result, bool) {
	if !c.opts.Hosts.Allows(host) {
		return Result{Err: fmt.Errorf("%w: %q", ErrHostNotAllowed, host)}, true
	}
	if m := c.cached(digest); m != nil {
		if c.opts.Metrics != nil {
			c.opts.Metrics.cacheHits.Inc()
		}
		return Result{Manifest: m}, true
	}
	return Result{}, false
}

// request fetches a manifest once a slot is free, within the timeout, and caches it.
func (c *Client) request(ctx context.Context, host, repository, digest string) (*Manifest, error) {
	start := time.Now()
	if c.opts.Metrics != nil {
		defer func() { c.opts.Metrics.duration.Observe(time.Since(start).Seconds()) }()
	}
	if c.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a lookup slot: %w", ctx.Err())
	}
	m, err := c.fetch(ctx, host, repository, digest)
	if err != nil {
		return nil, err
	}
	c.keep(digest, m)
	return m, nil
}

func (c *Client) fetch(ctx context.Context, host, repository, digest string) (*Manifest, error) {
	repo, err := remote.NewRepository(host + "/" + repository)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	repo.Client = c.auth
	desc, rc, err := repo.FetchReference(ctx, digest)
	switch {
	case errors.Is(err, errdef.ErrNotFound):
		return nil, fmt.Errorf("%w: %s/%s@%s: %w", ErrNotFound, host, repository, digest, err)
	case err != nil:
		return nil, fmt.Errorf("fetch %s/%s@%s: %w", host, repository, digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s/%s@%s: %w", host, repository, digest, err)
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%s/%s@%s: manifest over %d bytes", host, repository, digest, maxManifestBytes)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s/%s@%s: not a manifest: %w", host, repository, digest, err)
	}
	if m.MediaType == "" {
		m.MediaType = desc.MediaType // the registry's Content-Type, for a manifest that does not say
	}
	return &m, nil
}

func (c *Client) cached(digest string) *Manifest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cache[digest]
}

// keep caches m, dropping the oldest entry past CacheSize.
func (c *Client) keep(digest string, m *Manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cache[digest]; ok || c.opts.CacheSize <= 0 {
		return
	}
	if len(c.order) >= c.opts.CacheSize {
		delete(c.cache, c.order[0])
		c.order = c.order[1:]
	}
	c.cache[digest] = m
	c.order = append(c.order, digest)
}
