package bridge

import (
	"errors"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/natsbridge/acr-nats-bridge/acrevent"
	"github.com/natsbridge/acr-nats-bridge/cloudevents"
	"github.com/natsbridge/acr-nats-bridge/entra"
)

// Metrics are the bridge's Prometheus metrics. Labels take values from small fixed sets only, so that no
// input can grow the number of series.
type Metrics struct {
	received  *prometheus.CounterVec
	published *prometheus.CounterVec
	// publishedAs holds published's counter of each kind, looked up once rather than per message.
	publishedAs   [len(publishedKinds)]prometheus.Counter
	duplicates    prometheus.Counter
	deadLettered  prometheus.Counter
	passedThrough prometheus.Counter
	rejected      *prometheus.CounterVec
	requests      *prometheus.CounterVec
	requestTime   *prometheus.HistogramVec
	publishTime   prometheus.Histogram
	inflight      prometheus.Gauge
	batches       *prometheus.CounterVec
	batchSize     prometheus.Histogram
	// deliveries are Event Grid's deliveries by attempt: [0] first, [1] retry.
	deliveries [2]prometheus.Counter

	// receivedBy and requestsBy keep the series already used, so that counting an event or a request
	// hashes no label values.
	receivedBy seriesCache[receivedKey, prometheus.Counter]
	requestsBy seriesCache[requestKey, requestSeries]
}

type receivedKey struct {
	origin cloudevents.Schema
	typ    string
}

type requestKey struct {
	route string
	code  int
}

type requestSeries struct {
	count prometheus.Counter
	time  prometheus.Observer
}

// seriesCache maps label values to their series. It is read without a lock and copied on a write, which
// is rare: every label value of the bridge's metrics comes from a small fixed set, so the cache is full
// after the first requests of each kind.
type seriesCache[K comparable, V any] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]V]
}

func (c *seriesCache[K, V]) get(k K, create func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[K]V{}
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
		next = maps.Clone(*m)
	}
	v := create()
	next[k] = v
	c.m.Store(&next)
	return v
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_events_received_total",
			Help: "Events received, by origin (webhook, eventgrid, cloudevents) and type (ACR and Event Grid types by name; any other is \"other\").",
		}, []string{"origin", "type"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_events_published_total",
			Help: "Messages stored for the first time (acknowledged by JetStream, or flushed in core mode), by kind: acr, ping, passthrough, deadletter.",
		}, []string{"kind"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_events_duplicates_total",
			Help: "Messages JetStream acknowledged as duplicates of a stored Nats-Msg-Id (redeliveries).",
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_events_deadlettered_total",
			Help: "Events published to the dead-letter subject because they could not be normalised.",
		}),
		passedThrough: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_events_passed_through_total",
			Help: "Events of other types published unchanged under the passthrough prefix.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_requests_rejected_total",
			Help: "Deliveries refused, by reason: malformed, unauthorized, too_large, overloaded, unavailable (NATS), lookup_unavailable (a required registry lookup), body_read (a body the sender did not finish: too slow, or the connection dropped), keys_unavailable, internal.",
		}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_http_requests_total",
			Help: "HTTP requests, by route and status code.",
		}, []string{"route", "code"}),
		requestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bridge_http_request_duration_seconds",
			Help:    "Time from the request's headers to its answer, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		publishTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bridge_publish_duration_seconds",
			Help:    "Time to publish the messages of one request and receive every acknowledgement.",
			Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridge_inflight_requests",
			Help: "Deliveries being handled now (capped by BRIDGE_MAX_INFLIGHT).",
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_atomic_batches_total",
			Help: "JetStream atomic batches published, by result: committed, refused (nothing stored; its deliveries were published again on their own), failed (no answer).",
		}, []string{"result"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bridge_atomic_batch_messages",
			Help:    "Messages in each committed atomic batch, which may carry several deliveries.",
			Buckets: []float64{2, 5, 10, 25, 50, 100, 250, 500, 1000},
		}),
	}
	for _, result := range []string{"committed", "refused", "failed"} {
		m.batches.WithLabelValues(result)
	}
	// The events received exist from the start too, for every origin and the types known by name.
	for _, origin := range []cloudevents.Schema{cloudevents.SchemaWebhook, cloudevents.SchemaEventGrid, cloudevents.SchemaCloudEvents} {
		for _, typ := range []string{acrevent.TypeImagePushed, acrevent.TypeImageDeleted, acrevent.TypeChartPushed, acrevent.TypeChartDeleted,
			acrevent.TypeImageQuarantined, acrevent.TypePing, cloudevents.TypeSubscriptionValidation, cloudevents.TypeSubscriptionDeleted, "other"} {
			m.received.WithLabelValues(string(origin), typ)
		}
	}
	// Every reason exists from the start, so alerts and dashboards see 0 rather than no series.
	for _, reason := range []string{"malformed", "unauthorized", "keys_unavailable", "too_large",
		"overloaded", "unavailable", "lookup_unavailable", "body_read", "internal"} {
		m.rejected.WithLabelValues(reason)
	}
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_eventgrid_deliveries_total",
		Help: "Event Grid deliveries by attempt (from aeg-delivery-count): first, or retry of one Event Grid did not see answered 200.",
	}, []string{"attempt"})
	m.deliveries = [2]prometheus.Counter{deliveries.WithLabelValues("first"), deliveries.WithLabelValues("retry")}
	reg.MustRegister(deliveries)
	for kind, label := range publishedKinds {
		m.publishedAs[kind] = m.published.WithLabelValues(label)
	}
	reg.MustRegister(m.received, m.published, m.duplicates, m.deadLettered, m.passedThrough, m.rejected,
		m.requests, m.requestTime, m.publishTime, m.inflight, m.batches, m.batchSize)
	return m
}

// countReceived counts an event of the given type (for ACR events the type as normalised: a webhook's
// comes from its action).
func (m *Metrics) countReceived(ev cloudevents.Event, typ string) {
	k := receivedKey{ev.Schema, typeLabel(typ)}
	m.receivedBy.get(k, func() prometheus.Counter {
		return m.received.WithLabelValues(string(k.origin), k.typ)
	}).Inc()
}

// typeLabel bounds the type label: the types the bridge knows by name, "other" for the rest.
func typeLabel(t string) string {
	switch {
	case acrevent.IsEnvelopeType(t),
		t == cloudevents.TypeSubscriptionValidation, t == cloudevents.TypeSubscriptionDeleted:
		return t
	case t == "":
		return "none"
	}
	return "other"
}

// reasonOf names the class of a refused delivery, for bridge_requests_rejected_total.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, cloudevents.ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrUnauthorized), errors.Is(err, entra.ErrInvalidToken):
		return "unauthorized"
	case errors.Is(err, entra.ErrKeysUnavailable):
		return "keys_unavailable"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, errOverloaded):
		return "overloaded"
	case errors.Is(err, errLookupHeld):
		return "lookup_unavailable"
	case errors.Is(err, errBodyRead):
		return "body_read"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "internal"
}

// observeRequest counts a request by its route, which comes from the fixed set of routes, and its status.
func (m *Metrics) observeRequest(route string, code int, d time.Duration) {
	s := m.requestsBy.get(requestKey{route, code}, func() requestSeries {
		return requestSeries{m.requests.WithLabelValues(route, strconv.Itoa(code)), m.requestTime.WithLabelValues(route)}
	})
	s.count.Inc()
	s.time.Observe(d.Seconds())
}
