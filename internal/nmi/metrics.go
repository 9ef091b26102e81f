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

// Operation types of the imds_operations_* metrics, upstream NMI's names for its token acquisitions: from the node's
// IMDS for the system-assigned identity, for a user-assigned one, and from Entra ID (upstream: a service principal;
// here also a certificate or a federated service account).
const (
	opTokenIMDSSystem = "adal_token_msi"
	opTokenIMDSUser   = "adal_token_msi_userassignedid"
	opTokenEntra      = "adal_token"
)

// Operation types of kubernetes_api_operations_errors_count: finding the caller's pod, reading an identity's Secret.
const (
	opGetPodList = "get_pod_list"
	opGetSecret  = "get_secret"
)

// Metrics are the agent's Prometheus metrics, under upstream NMI's names and labels (aad-pod-identity's OpenCensus
// views, exported with the aadpodidentity namespace), so that dashboards built on them keep drawing.
type Metrics struct {
	operations   *prometheus.HistogramVec
	azureErrors  *prometheus.CounterVec
	azureLatency *prometheus.HistogramVec
	kubeErrors   *prometheus.CounterVec
}

// NewMetrics registers the agent's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		operations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aadpodidentity_nmi_operations_duration_seconds",
			Help:    "Duration of the node agent's token requests, by operation and HTTP status.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"operation_type", "status_code", "namespace", "resource"}),
		azureErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aadpodidentity_imds_operations_errors_count",
			Help: "Failed token acquisitions from IMDS or Entra ID, by operation (adal_token_msi, adal_token_msi_userassignedid, adal_token).",
		}, []string{"operation_type"}),
		azureLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aadpodidentity_imds_operations_duration_seconds",
			Help:    "Duration of successful token acquisitions from IMDS or Entra ID (cache hits excluded), by operation.",
			Buckets: []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 3, 4, 5, 10},
		}, []string{"operation_type"}),
		kubeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aadpodidentity_kubernetes_api_operations_errors_count",
			Help: "Failed Kubernetes reads, by operation (get_pod_list: no single live pod for the caller's address; get_secret).",
		}, []string{"operation_type"}),
	}
	reg.MustRegister(m.operations, m.azureErrors, m.azureLatency, m.kubeErrors)
	return m
}

// Operation records one served request.
func (m *Metrics) Operation(op string, status int, namespace, resource string, took time.Duration) {
	if m == nil {
		return
	}
	m.operations.WithLabelValues(op, strconv.Itoa(status), namespace, resource).Observe(took.Seconds())
}

// azureCall records one token acquisition from IMDS or Entra ID: its duration if it succeeded, else an error.
func (m *Metrics) azureCall(op string, took time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.azureErrors.WithLabelValues(op).Inc()
		return
	}
	m.azureLatency.WithLabelValues(op).Observe(took.Seconds())
}

// kubeError counts a failed Kubernetes read.
func (m *Metrics) kubeError(op string) {
	if m != nil {
		m.kubeErrors.WithLabelValues(op).Inc()
	}
}
