/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"net/http"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// upstreamNMIMetrics are the metrics upstream's NMI served (aad-pod-identity pkg/metrics: OpenCensus views exported
// under the aadpodidentity namespace) with each view's tag keys.
var upstreamNMIMetrics = map[string][]string{
	"aadpodidentity_nmi_operations_duration_seconds":        {"namespace", "operation_type", "resource", "status_code"},
	"aadpodidentity_imds_operations_errors_count":           {"operation_type"},
	"aadpodidentity_imds_operations_duration_seconds":       {"operation_type"},
	"aadpodidentity_kubernetes_api_operations_errors_count": {"operation_type"},
}

// After real work by the suite's agent (a token by federation, one Entra refuses, a Secret that is missing, a caller
// with no pod), its registry serves every metric upstream's NMI did, each series with exactly upstream's labels.
func TestUpstreamMetricsAreServed(t *testing.T) {
	ns := newNamespace(t)
	const trusted, untrusted, sp = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000a2", "00000000-0000-0000-0000-0000000000a3"
	cloud.AddIdentity(azurefake.Identity{ClientID: trusted, TenantID: tenantID})
	cloud.AddIdentity(azurefake.Identity{ClientID: untrusted, TenantID: tenantID})
	federatedAccount(t, ns, "metered", trusted)
	createAndSync(t,
		azureIdentity(ns, "trusted", aadv1.AzureIdentitySpec{ClientID: trusted}), binding(ns, "trusted", "trusted", "trusted"),
		azureIdentity(ns, "untrusted", aadv1.AzureIdentitySpec{ClientID: untrusted}), binding(ns, "untrusted", "untrusted", "untrusted"),
		azureIdentity(ns, "no-secret", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ClientID: sp, TenantID: tenantID,
			ClientPassword: corev1.SecretReference{Name: "absent"}}), binding(ns, "no-secret", "no-secret", "no-secret"))
	runningPod(t, ns, "trusted", "metered", "trusted", nodeName, "10.250.240.1")
	runningPod(t, ns, "untrusted", "metered", "untrusted", nodeName, "10.250.240.2")
	runningPod(t, ns, "no-secret", "metered", "no-secret", nodeName, "10.250.240.3")
	for ip, want := range map[string]int{"10.250.240.1": http.StatusOK, "10.250.240.2": http.StatusForbidden,
		"10.250.240.3": http.StatusForbidden, "10.250.240.4": http.StatusInternalServerError} {
		if r := get(t, ip+":40000", tokenPath(vault), nil); r.status != want {
			t.Errorf("request from %s: status %d %s, want %d", ip, r.status, r.body, want)
		}
	}
	families, err := agentMetrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]map[string]bool{}
	for _, f := range families {
		want, ok := upstreamNMIMetrics[f.GetName()]
		if !ok {
			continue
		}
		ops[f.GetName()] = map[string]bool{}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
				if l.GetName() == "operation_type" {
					ops[f.GetName()][l.GetValue()] = true
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s has labels %v, upstream's are %v", f.GetName(), got, want)
			}
		}
	}
	for name := range upstreamNMIMetrics {
		if len(ops[name]) == 0 {
			t.Errorf("%s not served", name)
		}
	}
	t.Logf("operation types served: %v", ops)
	for _, want := range []struct{ metric, op string }{
		{"aadpodidentity_imds_operations_duration_seconds", "adal_token"},
		{"aadpodidentity_imds_operations_errors_count", "adal_token"},
		{"aadpodidentity_kubernetes_api_operations_errors_count", "get_pod_list"},
		{"aadpodidentity_kubernetes_api_operations_errors_count", "get_secret"},
	} {
		if !ops[want.metric][want.op] {
			t.Errorf("no %s series for operation %s", want.metric, want.op)
		}
	}
}
