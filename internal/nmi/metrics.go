/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent's Prometheus metrics, under upstream NMI's names so existing dashboards keep working.
type Metrics struct {
	operations *prometheus.HistogramVec
	errors     *prometheus.CounterVec
}

// NewMetrics registers the agent's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		operations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aadpodidentity_nmi_operations_duration_seconds",
			Help:    "Duration of the node agent's token requests, by operation and HTTP status.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"operation_type", "status_code", "namespace", "resource"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aadpodidentity_imds_operations_errors_count",
			Help: "Token requests the node agent refused or could not serve, by operation and HTTP status.",
		}, []string{"operation_type", "status_code", "namespace", "resource"}),
	}
	reg.MustRegister(m.operations, m.errors)
	return m
}

// Operation records one served request.
func (m *Metrics) Operation(op string, status int, namespace, resource string, took time.Duration) {
	if m == nil {
		return
	}
	code := strconv.Itoa(status)
	m.operations.WithLabelValues(op, code, namespace, resource).Observe(took.Seconds())
	if status >= 400 {
		m.errors.WithLabelValues(op, code, namespace, resource).Inc()
	}
}
