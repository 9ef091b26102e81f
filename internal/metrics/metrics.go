/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package metrics holds acrpull's own Prometheus metrics, beyond controller-runtime's: token expiry per binding,
// mint outcomes, Azure request latency by endpoint and status, and token cache hits.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the collectors, registered once on a registry.
type Metrics struct {
	tokenExpiry   *prometheus.GaugeVec
	mintAttempts  *prometheus.CounterVec
	azureRequests *prometheus.HistogramVec
	cacheLookups  *prometheus.CounterVec
}

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
	}
	reg.MustRegister(m.tokenExpiry, m.mintAttempts, m.azureRequests, m.cacheLookups)
	return m
}

// TokenExpiry records when a binding's token expires.
func (m *Metrics) TokenExpiry(controller, namespace, name string, expires time.Time) {
	m.tokenExpiry.WithLabelValues(controller, namespace, name).Set(float64(expires.Unix()))
}

// ForgetBinding drops a deleted binding's series.
func (m *Metrics) ForgetBinding(controller, namespace, name string) {
	m.tokenExpiry.DeleteLabelValues(controller, namespace, name)
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
	}
	return "other"
}
