package lookup

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count what lookups do. Every label value is one of a fixed few, each present from the start.
type Metrics struct {
	// lookups are bridge_registry_lookups_total's counters by result, looked up once.
	lookups   map[string]prometheus.Counter
	duration  prometheus.Histogram
	cacheHits prometheus.Counter
}

// The result label of bridge_registry_lookups_total.
const (
	resultOK         = "ok"
	resultNotFound   = "not_found"
	resultNotAllowed = "not_allowed"
	resultFailed     = "failed"
)

// NewMetrics creates the lookup metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_registry_lookups_total",
		Help: "Registry lookups of pushed manifests, by result: ok (from the registry or the cache), not_found, not_allowed (a host outside BRIDGE_REGISTRY_HOSTS, never contacted), failed (timeout, refused credentials, 429, 5xx, unreachable).",
	}, []string{"result"})
	m := &Metrics{
		lookups: map[string]prometheus.Counter{},
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bridge_registry_lookup_duration_seconds",
			Help:    "Time of the registry requests of lookups (not of cache hits), waiting for a slot included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_registry_lookup_cache_hits_total",
			Help: "Lookups answered from the cache of manifests by digest, with no request.",
		}),
	}
	for _, r := range []string{resultOK, resultNotFound, resultNotAllowed, resultFailed} {
		m.lookups[r] = lookups.WithLabelValues(r)
	}
	reg.MustRegister(lookups, m.duration, m.cacheHits)
	return m
}

// count records one lookup's result.
func (m *Metrics) count(err error) {
	if m == nil {
		return
	}
	r := resultOK
	switch {
	case errors.Is(err, ErrHostNotAllowed):
		r = resultNotAllowed
	case errors.Is(err, ErrNotFound):
		r = resultNotFound
	case err != nil:
		r = resultFailed
	}
	m.lookups[r].Inc()
}
