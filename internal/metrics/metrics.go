/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package metrics holds acrpull's own Prometheus metrics, beyond controller-runtime's: token expiry per binding,
// mint outcomes, pull checks, Azure request latency by endpoint and status, and token cache hits.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the collectors, registered once on a registry.
type Metrics struct {
	mintAttempts  *prometheus.CounterVec
	azureRequests *prometheus.HistogramVec
	cacheLookups  *prometheus.CounterVec
	pullChecks    *prometheus.CounterVec

	// bindings is what the metrics remember of each binding: its token's expiry (one series per binding) and its
	// place in the Ready and Verified counts.
	bindings *bindingTable
}

type countKey struct {
	controller string
	bindingState
}

type bindingKey struct{ controller, namespace, name string }

type bindingState struct{ status, reason string }

// bindingRecord is one binding's entry. The zero expiry means no token recorded yet, the zero state no condition.
type bindingRecord struct {
	expiry          int64 // Unix seconds
	ready, verified bindingState
}

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		mintAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acrpull_mint_attempts_total",
			Help: "Credential mints by outcome: TokenMinted, or the failure reason.",
		}, []string{"controller", "reason"}),
		azureRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "acrpull_azure_request_duration_seconds",
			Help:    "Azure requests by endpoint and HTTP status (0: no response).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint", "code"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acrpull_token_cache_lookups_total",
			Help: "Token cache lookups by layer and result (hit, miss).",
		}, []string{"layer", "result"}),
		pullChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acrpull_pull_checks_total",
			Help: pullChecksHelp,
		}, []string{"reason"}),
	}
	ready := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "acrpull_bindings",
		Help: bindingsHelp,
	}, []string{"controller", "ready", "reason"})
	verified := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "acrpull_bindings_verified",
		Help: verifiedHelp,
	}, []string{"controller", "verified", "reason"})
	m.bindings = &bindingTable{
		records:  map[bindingKey]bindingRecord{},
		ready:    stateCounts{vec: ready, counts: map[countKey]int{}},
		verified: stateCounts{vec: verified, counts: map[countKey]int{}},
		expiry: prometheus.NewDesc("acrpull_token_expiry_timestamp_seconds",
			"When the token in a binding's pull secret expires (Unix seconds). Alert on expiry - time() < 15m.",
			[]string{"controller", "namespace", "binding"}, nil),
	}
	reg.MustRegister(m.mintAttempts, m.azureRequests, m.cacheLookups, m.pullChecks, ready, verified, expiryCollector{m.bindings})
	return m
}

const bindingsHelp = "Bindings this controller reconciled, by their Ready condition's status and reason. " +
	"Bindings that never minted have no expiry series: alert on this one for bindings not Ready."

const verifiedHelp = "Bindings this controller reconciled, by their Verified condition's status and reason: whether " +
	"the registry let the binding's credential read its repository. Bindings without the condition are not counted."

const pullChecksHelp = "Registry requests that checked whether a new credential can read its repository, by outcome " +
	"(the Verified condition's reason): one per distinct credential per refresh, however many bindings share it."

// BindingReadiness records a binding's Ready condition (its status, "True", "False" or "Unknown", and reason).
func (m *Metrics) BindingReadiness(controller, namespace, name, ready, reason string) {
	m.bindings.update(bindingKey{controller, namespace, name}, func(r *bindingRecord, t *bindingTable) {
		t.ready.move(controller, &r.ready, bindingState{ready, reason})
	})
}

// BindingVerification records a binding's Verified condition; an empty status means it has none (any more).
func (m *Metrics) BindingVerification(controller, namespace, name, verified, reason string) {
	state := bindingState{verified, reason}
	if verified == "" {
		state = bindingState{}
	}
	m.bindings.update(bindingKey{controller, namespace, name}, func(r *bindingRecord, t *bindingTable) {
		t.verified.move(controller, &r.verified, state)
	})
}

// TokenExpiry records when a binding's token expires.
func (m *Metrics) TokenExpiry(controller, namespace, name string, expires time.Time) {
	m.bindings.update(bindingKey{controller, namespace, name}, func(r *bindingRecord, _ *bindingTable) {
		r.expiry = expires.Unix()
	})
}

// ForgetBinding drops a deleted binding's expiry series and its place in the readiness and verification counts.
func (m *Metrics) ForgetBinding(controller, namespace, name string) {
	m.bindings.update(bindingKey{controller, namespace, name}, func(r *bindingRecord, t *bindingTable) {
		t.ready.move(controller, &r.ready, bindingState{})
		t.verified.move(controller, &r.verified, bindingState{})
		r.expiry = 0
	})
}

// PullCheck counts a registry request that checked a credential, by outcome.
func (m *Metrics) PullCheck(reason string) {
	m.pullChecks.WithLabelValues(reason).Inc()
}

// bindingTable holds one small record per binding for all three per-binding metrics. At 100,000 bindings a
// GaugeVec series per binding for the expiry, and a map per condition count, held about 70 MB of a 512Mi
// controller; the expiry series are now made when Prometheus scrapes, from the record.
type bindingTable struct {
	mu              sync.Mutex
	records         map[bindingKey]bindingRecord
	ready, verified stateCounts
	expiry          *prometheus.Desc
}

// update changes one binding's record under the lock, and drops a record left with nothing in it.
func (t *bindingTable) update(key bindingKey, change func(*bindingRecord, *bindingTable)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.records[key]
	change(&r, t)
	if r == (bindingRecord{}) {
		delete(t.records, key)
		return
	}
	t.records[key] = r
}

// stateCounts counts bindings by (status, reason) of one condition: a change moves one binding from its old count
// to its new one, so the gauge holds a handful of series however many bindings exist.
type stateCounts struct {
	vec    *prometheus.GaugeVec
	counts map[countKey]int
}

// move records a binding's new state (the zero state: none) in place of its old one. The caller holds the lock.
func (c *stateCounts) move(controller string, current *bindingState, next bindingState) {
	if *current == next {
		return
	}
	if *current != (bindingState{}) {
		c.add(controller, *current, -1)
	}
	if next != (bindingState{}) {
		c.add(controller, next, 1)
	}
	*current = next
}

// add changes a count, dropping the series when none is left so reasons no binding has any more do not linger as
// zeros.
func (c *stateCounts) add(controller string, s bindingState, delta int) {
	ck := countKey{controller, s}
	c.counts[ck] += delta
	if c.counts[ck] > 0 {
		c.vec.WithLabelValues(controller, s.status, s.reason).Set(float64(c.counts[ck]))
		return
	}
	delete(c.counts, ck)
	c.vec.DeleteLabelValues(controller, s.status, s.reason)
}

// expiryCollector writes acrpull_token_expiry_timestamp_seconds from the binding table when scraped.
type expiryCollector struct{ t *bindingTable }

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.t.expiry }

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	// Copied out first: the channel is drained by the registry, and holding the lock while it does would stall
	// every reconcile that records a state for the length of a scrape. One allocation holds every series, and the
	// label pairs of a controller or a namespace are made once per scrape and shared by its series (the registry
	// treats label pairs as immutable, as its own const metrics share theirs): at 100,000 bindings in 10,000
	// namespaces a series then costs one label pair of its own instead of three.
	c.t.mu.Lock()
	out := make([]expirySeries, 0, len(c.t.records))
	pairs := labelPairs{}
	for k, r := range c.t.records {
		if r.expiry == 0 {
			continue
		}
		out = append(out, expirySeries{desc: c.t.expiry, binding: k.name})
		s := &out[len(out)-1]
		s.value = float64(r.expiry)
		s.labels = [3]*dto.LabelPair{nil, pairs.of(controllerLabelName, k.controller), pairs.of(namespaceLabelName, k.namespace)}
	}
	c.t.mu.Unlock()
	for i := range out {
		ch <- &out[i]
	}
}

// labelPairs makes one label pair per label and value for a scrape.
type labelPairs map[[2]string]*dto.LabelPair

func (p labelPairs) of(name, value string) *dto.LabelPair {
	key := [2]string{name, value}
	if pair, ok := p[key]; ok {
		return pair
	}
	held := key // the pair points into its own copy, made only for a label value not seen before
	pair := &dto.LabelPair{Name: &held[0], Value: &held[1]}
	p[key] = pair
	return pair
}

// expirySeries is one binding's expiry series as a scrape writes it. A prometheus.MustNewConstMetric per binding
// would allocate its label pairs, their slice and its gauge anew for each; these live in the series, which the
// scrape allocated together.
type expirySeries struct {
	desc *prometheus.Desc
	// labels are the binding, controller and namespace pairs, sorted by name as Prometheus wants them written; the
	// binding's is filled in when written, from bindingPair.
	labels      [3]*dto.LabelPair
	binding     string
	bindingPair dto.LabelPair
	value       float64
	gauge       dto.Gauge
}

// The binding label's name, which every series' own pair points at.
var bindingLabelName = "binding"

// The other label names, which the scrape's shared pairs copy.
const (
	controllerLabelName = "controller"
	namespaceLabelName  = "namespace"
)

func (s *expirySeries) Desc() *prometheus.Desc { return s.desc }

func (s *expirySeries) Write(out *dto.Metric) error {
	s.bindingPair.Name, s.bindingPair.Value = &bindingLabelName, &s.binding
	s.labels[0] = &s.bindingPair
	s.gauge.Value = &s.value
	out.Label = s.labels[:]
	out.Gauge = &s.gauge
	return nil
}

// MintAttempt counts a mint by outcome.
func (m *Metrics) MintAttempt(controller, reason string) {
	m.mintAttempts.WithLabelValues(controller, reason).Inc()
}

// CacheLookup counts a token cache lookup.
func (m *Metrics) CacheLookup(layer string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheLookups.WithLabelValues(layer, result).Inc()
}

// Transport wraps next so every Azure request is timed by endpoint and status.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	return roundTripper{next: next, m: m}
}

type roundTripper struct {
	next http.RoundTripper
	m    *Metrics
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := rt.next.RoundTrip(req)
	code := "0"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	rt.m.azureRequests.WithLabelValues(endpointOf(req), code).Observe(time.Since(start).Seconds())
	return resp, err
}

// endpointOf names the kind of Azure endpoint a request went to, without any identifier from the URL.
func endpointOf(req *http.Request) string {
	p := strings.ToLower(req.URL.Path)
	switch {
	case strings.HasPrefix(p, "/metadata/identity/"):
		return "imds"
	case strings.HasSuffix(p, "/oauth2/v2.0/token"):
		return "entra-token"
	case strings.Contains(p, "/.well-known/openid-configuration"):
		return "entra-discovery"
	case p == "/oauth2/exchange":
		return "acr-exchange"
	case p == "/oauth2/token":
		return "acr-token"
	case strings.HasPrefix(p, "/v2/"):
		return "acr-registry"
	}
	return "other"
}
