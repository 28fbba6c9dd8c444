package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/bridge"
	"github.com/natsbridge/acr-nats-bridge/internal/registrytest"
	"github.com/natsbridge/acr-nats-bridge/lookup"
)

// pushed is one manifest PUT of a test registry and what the bridge must make of it.
type pushed struct {
	push registrytest.Push
	what string
	// kind is the kind by the event alone; looked the kind after a lookup.
	kind, looked string
}

// pushAll pushes, with real clients, what a registry gets from a release: a docker buildx multi-arch push
// with build attestations, a cosign signature, a Notation signature, an SPDX SBOM and an in-toto
// attestation attached as referrers, an ORAS artifact and a Helm chart. It returns every manifest PUT in
// the order the registry stored them, with the kinds they must become.
func pushAll(t *testing.T, r *registrytest.Registry) []pushed {
	t.Helper()
	var out []pushed
	take := func(what string, kinds ...string) {
		ps := r.Pushes()
		require.Len(t, ps, len(kinds)/2, what)
		for i, p := range ps {
			out = append(out, pushed{push: p, what: fmt.Sprintf("%s #%d", what, i), kind: kinds[2*i], looked: kinds[2*i+1]})
		}
	}
	platforms := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}
	idx := r.PushIndex(t, "team/web", "v1", platforms, true, map[string]string{
		"org.opencontainers.image.source": "https://github.com/example/web", "org.opencontainers.image.revision": "0123abc"})
	take("buildx push", "manifest", "manifest", "manifest", "manifest", "manifest", "manifest", "manifest", "manifest", "image", "image")
	r.PushCosignSignature(t, "team/web", idx)
	take("cosign sign", "signature", "signature")
	r.PushReferrer(t, "team/web", idx, registrytest.NotarySignature, "application/jose+json", []byte(`{"payload":"x"}`))
	take("notation sign", "manifest", "signature")
	r.PushReferrer(t, "team/web", idx, registrytest.SPDX, registrytest.SPDX, []byte(`{"spdxVersion":"SPDX-2.3"}`))
	take("oras attach sbom", "manifest", "sbom")
	r.PushReferrer(t, "team/web", idx, registrytest.InToto, "application/vnd.dsse.envelope.v1+json", []byte(`{"payloadType":"application/vnd.in-toto+json"}`))
	take("attest", "manifest", "attestation")
	r.PushArtifact(t, "team/docs", "v1", "application/vnd.example.docs.v1", nil)
	take("oras push", "image", "artifact")
	r.PushChart(t, "charts/web", "1.2.3")
	take("helm push", "image", "chart")
	return out
}

// lookupClient is a lookup client that may ask r only.
func lookupClient(t *testing.T, r *registrytest.Registry, timeout time.Duration) *lookup.Client {
	t.Helper()
	hosts, err := lookup.ParseHosts([]string{r.Host})
	require.NoError(t, err)
	return lookup.NewClient(lookup.Options{Hosts: hosts, HTTPClient: r.HTTPClient(), Timeout: timeout, Concurrency: 4, CacheSize: 100,
		Metrics: lookup.NewMetrics(prometheus.NewRegistry())})
}

// wayIn delivers the ACR events of pushes through one way in, with event ids of its own.
type wayIn struct {
	name    string
	deliver func(t *testing.T, e *testEnv, ps []registrytest.Push, host string) int
}

var waysIn = []wayIn{
	{"webhook", func(t *testing.T, e *testEnv, ps []registrytest.Push, host string) int {
		for i, p := range ps {
			if code, _, _ := e.post("/webhooks/acr/myregistry", p.Webhook(fmt.Sprintf("wh-%d", i), host)); code != http.StatusOK {
				return code
			}
		}
		return http.StatusOK
	}},
	{"eventgrid", func(t *testing.T, e *testEnv, ps []registrytest.Push, host string) int {
		var evs []map[string]any
		for i, p := range ps {
			evs = append(evs, p.EventGrid(fmt.Sprintf("eg-%d", i), "myregistry", host))
		}
		code, _, _ := e.post("/eventgrid", registrytest.Batch(evs...), "Content-Type", "application/json", "aeg-event-type", "Notification")
		return code
	}},
	{"cloudevents", func(t *testing.T, e *testEnv, ps []registrytest.Push, host string) int {
		var evs []map[string]any
		for i, p := range ps {
			evs = append(evs, p.CloudEvent(fmt.Sprintf("ce-%d", i), "myregistry", host))
		}
		code, _, _ := e.post("/eventgrid", registrytest.Batch(evs...), "Content-Type", "application/cloudevents-batch+json; charset=utf-8")
		return code
	}},
	{"pull", func(t *testing.T, e *testEnv, ps []registrytest.Push, host string) int {
		var raws []json.RawMessage
		for i, p := range ps {
			raw, err := json.Marshal(p.CloudEvent(fmt.Sprintf("pull-%d", i), "myregistry", host))
			require.NoError(t, err)
			raws = append(raws, raw)
		}
		results, _ := e.pull(context.Background(), raws)
		for _, r := range results {
			if r.Outcome != bridge.Stored {
				return http.StatusServiceUnavailable
			}
		}
		return http.StatusOK
	}},
}

// storedArtifacts reads back every envelope in the stream: its subject and its artifact.
func storedArtifacts(t *testing.T, e *testEnv) (subjects []string, artifacts []*acrevent.Artifact) {
	t.Helper()
	for _, m := range e.stored() {
		env, err := acrevent.DecodeEnvelope(m.Header, m.Data)
		require.NoError(t, err)
		subjects = append(subjects, m.Subject)
		artifacts = append(artifacts, env.Data.Artifact)
	}
	return subjects, artifacts
}

// TestLookupsThroughEveryWayIn: the events of real pushes, in the order a real push makes them, with
// their real digests, media types and tags, through the webhook, the Event Grid and CloudEvents schemas and
// pull, with lookups off, best-effort and required: each becomes the kind DESIGN §4 gives it, and a
// multi-arch push gives exactly one message on acr.image.pushed.>.
func TestLookupsThroughEveryWayIn(t *testing.T) {
	r := registrytest.New(t)
	want := pushAll(t, r)
	ps := make([]registrytest.Push, len(want))
	for i, w := range want {
		ps[i] = w.push
	}
	for _, mode := range []string{"off", "best-effort", "required"} {
		for _, way := range waysIn {
			t.Run(mode+"/"+way.name, func(t *testing.T) {
				e := newEnv(t, func(s *setup) {
					if mode != "off" {
						s.path.Registry = lookupClient(t, r, 5*time.Second)
						s.path.LookupRequired = mode == "required"
					}
				})
				require.Equal(t, http.StatusOK, way.deliver(t, e, ps, r.Host))
				subjects, artifacts := storedArtifacts(t, e)
				require.Len(t, subjects, len(want))
				images := 0
				for i, w := range want {
					kind := w.kind
					if mode != "off" {
						kind = w.looked
					}
					a := artifacts[i]
					require.NotNil(t, a, w.what)
					assert.Equal(t, kind, a.Kind, w.what)
					assert.True(t, strings.HasPrefix(subjects[i], "acr."+kind+".pushed.myregistry."), "%s: %s", w.what, subjects[i])
					if strings.HasPrefix(subjects[i], "acr.image.pushed.") && w.push.Repository == "team/web" {
						images++
					}
					if mode == "off" {
						assert.Empty(t, a.Lookup, w.what)
						assert.Empty(t, a.ArtifactType, w.what)
						continue
					}
					assert.Equal(t, acrevent.LookupOK, a.Lookup, w.what)
				}
				assert.Equal(t, 1, images, "one message on acr.image.pushed.> for the release")
				if mode == "off" {
					return
				}
				// What the lookups add: the index's platforms and annotations, a referrer's subject.
				index := artifacts[4]
				assert.True(t, index.Index)
				var platforms, digests, pushedByDigest []string
				for _, p := range index.Platforms {
					platforms = append(platforms, p.OS+"/"+p.Architecture+"/"+p.Variant)
					digests = append(digests, p.Digest)
				}
				for _, w := range want[:4] {
					pushedByDigest = append(pushedByDigest, w.push.Digest)
				}
				assert.ElementsMatch(t, []string{"linux/amd64/", "linux/arm64/v8", "unknown/unknown/", "unknown/unknown/"}, platforms)
				assert.ElementsMatch(t, pushedByDigest, digests, "the platforms are the manifests pushed before the index")
				assert.Equal(t, "https://github.com/example/web", index.Annotations["org.opencontainers.image.source"])
				assert.Equal(t, "0123abc", index.Annotations["org.opencontainers.image.revision"])
				assert.Empty(t, index.ArtifactType, "an index without an artifactType has none")
				notation := artifacts[6]
				assert.Equal(t, registrytest.NotarySignature, notation.ArtifactType)
				assert.Equal(t, &acrevent.ArtifactSubject{Digest: want[4].push.Digest, MediaType: "application/vnd.oci.image.index.v1+json"}, notation.Subject)
				assert.Equal(t, registrytest.SPDX, artifacts[7].ArtifactType)
				assert.Equal(t, "application/vnd.example.docs.v1", artifacts[9].ArtifactType)
				assert.Equal(t, registrytest.HelmConfig, artifacts[10].ArtifactType)
			})
		}
	}
}

// fault makes the registry fail every request in one way until it is cleared.
type fault struct {
	name string
	// set breaks r, and returns what the event's host is when the fault is in the host itself.
	set func(r *registrytest.Registry)
	// gone: the manifest is not there, which no retry mends.
	gone bool
}

var faults = []fault{
	{"down", func(r *registrytest.Registry) {
		r.Intercept(func(w http.ResponseWriter, _ *http.Request) bool {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return true
		})
	}, false},
	{"slow", func(r *registrytest.Registry) { r.Delay.Store(int64(2 * time.Second)) }, false},
	{"401", func(r *registrytest.Registry) { r.RequireBasic("someone", "else") }, false},
	{"429", func(r *registrytest.Registry) { answer(r, http.StatusTooManyRequests) }, false},
	{"503", func(r *registrytest.Registry) { answer(r, http.StatusServiceUnavailable) }, false},
	{"404", func(r *registrytest.Registry) { answer(r, http.StatusNotFound) }, true},
}

func answer(r *registrytest.Registry, code int) {
	r.Intercept(func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Retry-After", "1")
		http.Error(w, http.StatusText(code), code)
		return true
	})
}

func heal(r *registrytest.Registry) {
	r.Intercept(nil)
	r.Delay.Store(0)
	r.RequireBasic("", "")
}

// TestLookupFaults: a registry down, slow, refusing the credentials, limiting the rate or failing, each
// with lookups best-effort (published with the event's kind, lookup failed) and required (503, or a pulled
// event released, and stored once the registry answers: nothing lost). A manifest that is gone is
// published as not_found in both.
func TestLookupFaults(t *testing.T) {
	r := registrytest.New(t)
	r.PushReferrer(t, "team/web", r.PushImage(t, "team/web", "v1", nil), registrytest.NotarySignature, "application/jose+json", []byte(`{}`))
	sig := r.Pushes()[1]
	for _, required := range []bool{false, true} {
		for _, f := range faults {
			mode := map[bool]string{false: "best-effort", true: "required"}[required]
			t.Run(mode+"/"+f.name, func(t *testing.T) {
				defer heal(r)
				e := newEnv(t, func(s *setup) {
					s.path.Registry = lookupClient(t, r, 500*time.Millisecond)
					s.path.LookupRequired = required
				})
				f.set(r)
				start := time.Now()
				code, hdr, _ := e.post("/webhooks/acr/myregistry", sig.Webhook("wh-1", r.Host))
				raw, err := json.Marshal(sig.CloudEvent("pull-1", "myregistry", r.Host))
				require.NoError(t, err)
				results, _ := e.pull(context.Background(), []json.RawMessage{raw})
				assert.Less(t, time.Since(start), 3*time.Second, "bounded by the lookup timeout")

				if required && !f.gone {
					assert.Equal(t, http.StatusServiceUnavailable, code)
					assert.NotEmpty(t, hdr.Get("Retry-After"))
					assert.Equal(t, bridge.Retry, results[0].Outcome, "released")
					assert.Empty(t, e.stored(), "held back, not published")
					assert.Contains(t, e.logs.String(), "held back")
					// The registry answers again: the redeliveries are stored, as signatures.
					heal(r)
					code, _, _ = e.post("/webhooks/acr/myregistry", sig.Webhook("wh-1", r.Host))
					require.Equal(t, http.StatusOK, code)
					results, _ = e.pull(context.Background(), []json.RawMessage{raw})
					require.Equal(t, bridge.Stored, results[0].Outcome)
					subjects, artifacts := storedArtifacts(t, e)
					require.Len(t, subjects, 2)
					for i := range subjects {
						assert.Equal(t, "acr.signature.pushed.myregistry.team.web", subjects[i])
						assert.Equal(t, acrevent.LookupOK, artifacts[i].Lookup)
					}
					return
				}
				require.Equal(t, http.StatusOK, code)
				require.Equal(t, bridge.Stored, results[0].Outcome)
				subjects, artifacts := storedArtifacts(t, e)
				require.Len(t, subjects, 2)
				for i := range subjects {
					assert.Equal(t, "acr.manifest.pushed.myregistry.team.web", subjects[i], "the event's own kind")
					assert.Equal(t, map[bool]string{false: acrevent.LookupFailed, true: acrevent.LookupNotFound}[f.gone], artifacts[i].Lookup)
					assert.Empty(t, artifacts[i].ArtifactType)
				}
			})
		}
	}
}

// TestLookupsGoOnlyToListedHosts: an event naming a host outside the list (another registry, an address,
// a name with a path) makes no request at all, in either mode, and is published with lookup failed.
func TestLookupsGoOnlyToListedHosts(t *testing.T) {
	r := registrytest.New(t)
	r.PushImage(t, "team/web", "v1", nil)
	p := r.Pushes()[0]
	_, port, _ := strings.Cut(r.Host, ":")
	for _, required := range []bool{false, true} {
		e := newEnv(t, func(s *setup) {
			s.path.Registry = lookupClient(t, r, 5*time.Second)
			s.path.LookupRequired = required
		})
		before := r.Requests.Load()
		for i, host := range []string{"evil.example.org", "127.0.0.1:" + port, "localhost:" + port, "registry.example.com", "registry.example.com:" + port + "/x", ""} {
			code, _, _ := e.post("/webhooks/acr/myregistry", p.Webhook(fmt.Sprintf("wh-%d", i), host))
			require.Equal(t, http.StatusOK, code, host)
		}
		assert.Equal(t, before, r.Requests.Load(), "no request made")
		_, artifacts := storedArtifacts(t, e)
		require.Len(t, artifacts, 6)
		for _, a := range artifacts {
			assert.Equal(t, "image", a.Kind)
			assert.Equal(t, acrevent.LookupFailed, a.Lookup)
		}
		assert.Contains(t, e.logs.String(), "not in BRIDGE_REGISTRY_HOSTS")
	}
}

// TestLookupsCachedAndSkipped: a redelivery, or the same push through another channel, costs no request
// and is published as the first was; deletes, chart events and quarantines are never looked up.
func TestLookupsCachedAndSkipped(t *testing.T) {
	r := registrytest.New(t)
	r.PushChart(t, "charts/web", "1.0.0")
	p := r.Pushes()[0]
	e := newEnv(t, func(s *setup) { s.path.Registry = lookupClient(t, r, 5*time.Second) })
	code, _, _ := e.post("/webhooks/acr/myregistry", p.Webhook("wh-1", r.Host))
	require.Equal(t, http.StatusOK, code)
	before := r.Requests.Load()
	code, _, _ = e.post("/eventgrid", registrytest.Batch(p.EventGrid("eg-1", "myregistry", r.Host)), "Content-Type", "application/json")
	require.Equal(t, http.StatusOK, code)
	code, _, _ = e.post("/webhooks/acr/myregistry", p.Webhook("wh-1", r.Host))
	require.Equal(t, http.StatusOK, code)

	for i, action := range []string{"delete", "chart_push", "chart_delete", "quarantine"} {
		data := p.Data(fmt.Sprintf("other-%d", i), r.Host)
		data["action"] = action
		body, err := json.Marshal(data)
		require.NoError(t, err)
		code, _, _ = e.post("/webhooks/acr/myregistry", body)
		require.Equal(t, http.StatusOK, code, action)
	}
	assert.Equal(t, before, r.Requests.Load(), "the cache answered; the others were not looked up")

	subjects, artifacts := storedArtifacts(t, e)
	require.Len(t, subjects, 6, "the redelivery is a duplicate")
	assert.Equal(t, "acr.chart.pushed.myregistry.charts.web", subjects[0])
	assert.Equal(t, artifacts[0], artifacts[1], "through another channel, published as the first was")
	assert.Equal(t, []string{"acr.image.deleted.myregistry.charts.web", "acr.chart.pushed.myregistry.charts.web",
		"acr.chart.deleted.myregistry.charts.web", "acr.image.quarantined.myregistry.charts.web"}, subjects[2:])
	for _, a := range artifacts[2:] {
		assert.Empty(t, a.Lookup)
	}
}
