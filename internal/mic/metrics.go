/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the assignment controller's metrics under upstream MIC's names.
type Metrics struct {
	cycles        prometheus.Counter
	cycleDuration prometheus.Histogram
	armErrors     *prometheus.CounterVec
}

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
		armErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aadpodidentity_cloud_provider_operations_errors_count",
			Help: "Failed Resource Manager operations, by operation (vm_get, vm_update, vmss_get, vmss_update).",
		}, []string{"operation_type"}),
	}
	reg.MustRegister(m.cycles, m.cycleDuration, m.armErrors)
	return m
}

func (m *Metrics) cycle(took time.Duration) {
	if m != nil {
		m.cycles.Inc()
		m.cycleDuration.Observe(took.Seconds())
	}
}

func (m *Metrics) armError(host Host, update bool) {
	if m == nil {
		return
	}
	op := "vm"
	if host.ScaleSet {
		op = "vmss"
	}
	if update {
		op += "_update"
	} else {
		op += "_get"
	}
	m.armErrors.WithLabelValues(op).Inc()
}
