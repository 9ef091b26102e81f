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
)

// Metrics are the collectors, registered once on a registry.
type Metrics struct {
	tokenExpiry   *prometheus.GaugeVec
	mintAttempts  *prometheus.CounterVec
	azureRequests *prometheus.HistogramVec
	cacheLookups  *prometheus.CounterVec
	pullChecks    *prometheus.CounterVec

	// readiness and verification count bindings by their Ready and Verified conditions.
	readiness    *stateGauge
	verification *stateGauge
}

type countKey struct {
	controller string
	bindingState
}

type bindingKey struct{ controller, namespace, name string }

type bindingState struct{ status, reason string }

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		tokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "acrpull_token_expiry_timestamp_seconds",
			Help: "When the token in a binding's pull secret expires (Unix seconds). Alert on expiry - time() < 15m.",
		}, []string{"controller", "namespace", "binding"}),
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
	bindings := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "acrpull_bindings",
		Help: bindingsHelp,
	}, []string{"controller", "ready", "reason"})
	verified := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "acrpull_bindings_verified",
		Help: verifiedHelp,
	}, []string{"controller", "verified", "reason"})
	m.readiness, m.verification = newStateGauge(bindings), newStateGauge(verified)
	reg.MustRegister(m.tokenExpiry, m.mintAttempts, m.azureRequests, m.cacheLookups, m.pullChecks, bindings, verified)
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
	m.readiness.set(bindingKey{controller, namespace, name}, bindingState{ready, reason})
}

// BindingVerification records a binding's Verified condition; an empty status means it has none (any more).
func (m *Metrics) BindingVerification(controller, namespace, name, verified, reason string) {
	key := bindingKey{controller, namespace, name}
	if verified == "" {
		m.verification.forget(key)
		return
	}
	m.verification.set(key, bindingState{verified, reason})
}

// PullCheck counts a registry request that checked a credential, by outcome.
func (m *Metrics) PullCheck(reason string) {
	m.pullChecks.WithLabelValues(reason).Inc()
}

// stateGauge counts bindings by (status, reason) of one condition. It remembers each binding's last reported state,
// so a change moves one count from its old state to its new one and a deletion takes it away: the gauge holds a
// handful of series however many bindings exist.
type stateGauge struct {
	vec    *prometheus.GaugeVec
	mu     sync.Mutex
	states map[bindingKey]bindingState
	counts map[countKey]int
}

func newStateGauge(vec *prometheus.GaugeVec) *stateGauge {
	return &stateGauge{vec: vec, states: map[bindingKey]bindingState{}, counts: map[countKey]int{}}
}

func (g *stateGauge) set(key bindingKey, state bindingState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old, known := g.states[key]
	if known && old == state {
		return
	}
	if known {
		g.decrement(key.controller, old)
	}
	g.states[key] = state
	ck := countKey{key.controller, state}
	g.counts[ck]++
	g.vec.WithLabelValues(key.controller, state.status, state.reason).Set(float64(g.counts[ck]))
}

// forget takes a binding out of the counts.
func (g *stateGauge) forget(key bindingKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if old, known := g.states[key]; known {
		delete(g.states, key)
		g.decrement(key.controller, old)
	}
}

// decrement takes one binding from a count, dropping the series when none is left so reasons no binding has any
// more do not linger as zeros. The caller holds mu.
func (g *stateGauge) decrement(controller string, s bindingState) {
	ck := countKey{controller, s}
	g.counts[ck]--
	if g.counts[ck] > 0 {
		g.vec.WithLabelValues(controller, s.status, s.reason).Set(float64(g.counts[ck]))
		return
	}
	delete(g.counts, ck)
	g.vec.DeleteLabelValues(controller, s.status, s.reason)
}

// TokenExpiry records when a binding's token expires.
func (m *Metrics) TokenExpiry(controller, namespace, name string, expires time.Time) {
	m.tokenExpiry.WithLabelValues(controller, namespace, name).Set(float64(expires.Unix()))
}

// ForgetBinding drops a deleted binding's series and its place in the readiness and verification counts.
func (m *Metrics) ForgetBinding(controller, namespace, name string) {
	m.tokenExpiry.DeleteLabelValues(controller, namespace, name)
	key := bindingKey{controller, namespace, name}
	m.readiness.forget(key)
	m.verification.forget(key)
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
