/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation types of the kubernetes_api_operations_errors_count metric, upstream MIC's names for the record writes.
const (
	opRecordAddition = "assigned_identity_addition"
	opRecordDeletion = "assigned_identity_deletion"
	opRecordUpdate   = "assigned_identity_update"
	opRecordStatus   = "update_azure_assigned_identity_status"
)

// Metrics are the assignment controller's metrics under upstream MIC's names and labels (aad-pod-identity's
// OpenCensus views, exported with the aadpodidentity namespace), so that dashboards built on them keep drawing.
type Metrics struct {
	cycles        prometheus.Counter
	cycleDuration prometheus.Histogram
	leaderships   prometheus.Counter
	armErrors     *prometheus.CounterVec
	armDuration   *prometheus.HistogramVec
	kubeErrors    *prometheus.CounterVec
	// Record writes, by kind: addition (create), deletion, update (a record whose binding or identity changed).
	recordCount    map[string]prometheus.Counter
	recordDuration map[string]prometheus.Histogram
}

// recordBuckets are upstream's for the record writes, in seconds.
var recordBuckets = []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 3, 4, 5, 10}

// NewMetrics registers the controller's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		cycles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aadpodidentity_mic_cycle_count", Help: "Assignment cycles run.",
		}),
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "aadpodidentity_mic_cycle_duration_seconds", Help: "Duration of assignment cycles.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 8),
		}),
		leaderships: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aadpodidentity_mic_new_leader_election_count", Help: "Times this process became the leader.",
		}),
		armErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aadpodidentity_cloud_provider_operations_errors_count",
			Help: "Failed Resource Manager operations, by operation (vm_get, vm_update, vmss_get, vmss_update).",
		}, []string{"operation_type"}),
		armDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aadpodidentity_cloud_provider_operations_duration_seconds",
			Help:    "Duration of successful Resource Manager operations (an update until its operation is done), by operation.",
			Buckets: []float64{0.5, 1, 5, 10, 30, 60, 120, 300, 600, 900, 1200},
		}, []string{"operation_type"}),
		kubeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aadpodidentity_kubernetes_api_operations_errors_count",
			Help: "Failed writes of AzureAssignedIdentity records, by operation.",
		}, []string{"operation_type"}),
		recordCount:    map[string]prometheus.Counter{},
		recordDuration: map[string]prometheus.Histogram{},
	}
	reg.MustRegister(m.cycles, m.cycleDuration, m.leaderships, m.armErrors, m.armDuration, m.kubeErrors)
	for op, what := range map[string]string{opRecordAddition: "addition", opRecordDeletion: "deletion", opRecordUpdate: "update"} {
		m.recordCount[op] = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aadpodidentity_assigned_identity_" + what + "_count", Help: "AzureAssignedIdentity record " + what + "s written.",
		})
		m.recordDuration[op] = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "aadpodidentity_assigned_identity_" + what + "_duration_seconds", Help: "Duration of AzureAssignedIdentity record " + what + "s.",
			Buckets: recordBuckets,
		})
		reg.MustRegister(m.recordCount[op], m.recordDuration[op])
	}
	return m
}

func (m *Metrics) cycle(took time.Duration) {
	if m != nil {
		m.cycles.Inc()
		m.cycleDuration.Observe(took.Seconds())
	}
}

// armOperation names a Resource Manager operation as upstream did: vm_get, vm_update, vmss_get, vmss_update.
func armOperation(host Host, update bool) string {
	op := "vm"
	if host.ScaleSet {
		op = "vmss"
	}
	if update {
		return op + "_update"
	}
	return op + "_get"
}

func (m *Metrics) armError(host Host, update bool) {
	if m != nil {
		m.armErrors.WithLabelValues(armOperation(host, update)).Inc()
	}
}

func (m *Metrics) armDone(host Host, update bool, took time.Duration) {
	if m != nil {
		m.armDuration.WithLabelValues(armOperation(host, update)).Observe(took.Seconds())
	}
}

// recordWrite counts one write of a record (op is one of the opRecord constants): a failed one by operation, a
// successful addition, deletion or update with its duration.
func (m *Metrics) recordWrite(op string, took time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.kubeErrors.WithLabelValues(op).Inc()
		return
	}
	if c := m.recordCount[op]; c != nil {
		c.Inc()
		m.recordDuration[op].Observe(took.Seconds())
	}
}

// leadership counts becoming the leader: the manager starts it once this process leads (at once without election).
type leadership struct{ m *Metrics }

func (l leadership) Start(ctx context.Context) error {
	if l.m != nil {
		l.m.leaderships.Inc()
	}
	<-ctx.Done()
	return nil
}

func (leadership) NeedLeaderElection() bool { return true }
