/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"strings"
	"testing"

	eventsv1 "k8s.io/api/events/v1"
)

// Runs last (file order): after every other test has issued and refused tokens, nothing the agents logged and no
// Event holds a token. Entra and service-account tokens are JWTs, whose encoded header starts with "eyJ".
func TestNoTokensInLogsOrEvents(t *testing.T) {
	log := agentLog.String()
	if !strings.Contains(log, `"msg":"refused"`) {
		t.Fatal("the agents logged no refusals: the search below would prove nothing")
	}
	if i := strings.Index(log, "eyJ"); i >= 0 {
		t.Fatalf("token-like text in the agents' log: ...%s...", log[max(0, i-80):i])
	}
	var evs eventsv1.EventList
	if err := k8s.List(context.Background(), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 {
		t.Fatal("no Events: the search below would prove nothing")
	}
	for _, e := range evs.Items {
		if strings.Contains(e.Note, "eyJ") {
			t.Errorf("token-like text in Event %s/%s", e.Namespace, e.Name)
		}
	}
}

// The agent's metrics carry upstream NMI's names and labels, so existing dashboards keep working.
func TestMetricsUseUpstreamNames(t *testing.T) {
	families, err := agentMetrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "aadpodidentity_nmi_operations_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status_code" {
					statuses[l.GetValue()] = true
				}
			}
		}
	}
	for _, want := range []string{"200", "400", "403", "404", "500"} {
		if !statuses[want] {
			t.Errorf("no aadpodidentity_nmi_operations_duration_seconds sample with status_code %s (have %v)", want, statuses)
		}
	}
}
