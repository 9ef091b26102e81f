/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/mic"
)

// upstreamMICMetrics are the metrics upstream's MIC served (aad-pod-identity pkg/metrics: OpenCensus views exported
// under the aadpodidentity namespace) with each view's tag keys.
var upstreamMICMetrics = map[string][]string{
	"aadpodidentity_assigned_identity_addition_duration_seconds": nil,
	"aadpodidentity_assigned_identity_addition_count":            nil,
	"aadpodidentity_assigned_identity_deletion_duration_seconds": nil,
	"aadpodidentity_assigned_identity_deletion_count":            nil,
	"aadpodidentity_assigned_identity_update_duration_seconds":   nil,
	"aadpodidentity_assigned_identity_update_count":              nil,
	"aadpodidentity_mic_cycle_duration_seconds":                  nil,
	"aadpodidentity_mic_cycle_count":                             nil,
	"aadpodidentity_mic_new_leader_election_count":               nil,
	"aadpodidentity_cloud_provider_operations_errors_count":      {"operation_type"},
	"aadpodidentity_cloud_provider_operations_duration_seconds":  {"operation_type"},
	"aadpodidentity_kubernetes_api_operations_errors_count":      {"operation_type"},
}

// assertUpstreamMetrics checks that every metric in want was gathered, each series with exactly upstream's labels.
func assertUpstreamMetrics(t *testing.T, families []*dto.MetricFamily, want map[string][]string) {
	t.Helper()
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	for name, labels := range want {
		f := byName[name]
		if f == nil || len(f.GetMetric()) == 0 {
			t.Errorf("%s not served", name)
			continue
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			slices.Sort(got)
			sorted := slices.Sorted(slices.Values(labels))
			if !slices.Equal(got, sorted) {
				t.Errorf("%s has labels %v, upstream's are %v", name, got, sorted)
			}
		}
	}
}

// counterValue is the sum of a counter family's series with the given operation_type ("" for any).
func counterValue(t *testing.T, name, op string) float64 {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if op == "" || slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == "operation_type" && l.GetValue() == op
			}) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// After real work (a record added, updated and deleted, a refused identity, a record the apiserver rejects) the
// controller's registry serves every metric upstream's MIC did, under upstream's names and labels.
func TestUpstreamMetricsAreServed(t *testing.T) {
	ns := newNamespace(t)
	host := scaleSet(t, "pool-metrics", "metrics-0")
	rid := userIdentity(t, ns, "metered", "00000000-0000-0000-0000-0000000000b1", "metered")
	refused := userIdentity(t, ns, "metered-refused", "00000000-0000-0000-0000-0000000000b2", "metered-refused")
	cloud.DenyAssign(refused)
	additions := counterValue(t, "aadpodidentity_assigned_identity_addition_count", "")
	pod := labelledPod(t, ns, "p", "metrics-0", "metered")
	labelledPod(t, ns, "q", "metrics-0", "metered-refused")
	eventually(t, "assigned", 20*time.Second, func() bool {
		r := record(mic.DefaultNamespace, pod.Name, ns, "metered")
		return r != nil && r.Status.Status == aadv1.AssignedIDAssigned && onHost(t, host, rid)
	})
	if counterValue(t, "aadpodidentity_assigned_identity_addition_count", "") <= additions {
		t.Error("the record's creation was not counted")
	}
	// A changed identity updates the record.
	id := &aadv1.AzureIdentity{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "metered"}, id); err != nil {
		t.Fatal(err)
	}
	id.Annotations = map[string]string{"touched": "yes"}
	if err := k8s.Update(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the record updated", 20*time.Second, func() bool {
		return counterValue(t, "aadpodidentity_assigned_identity_update_count", "") > 0
	})
	// An admission policy refuses one pod's record: the apiserver rejects its creation.
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "mic-metrics-refuse-record"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptrTo(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{aadv1.GroupVersion.Group}, APIVersions: []string{"*"},
						Resources: []string{"azureassignedidentities"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "object.spec.podNamespace != '" + ns + "' || object.spec.pod != 'refused'",
				Message:    "record refused by the test's policy",
			}},
		},
	}
	create(t, policy)
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}
	create(t, binding)
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), binding)
		_ = k8s.Delete(context.Background(), policy)
	})
	eventually(t, "the policy in force", 30*time.Second, func() bool {
		probe := &aadv1.AzureAssignedIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: mic.DefaultNamespace, GenerateName: "probe-"},
			Spec: aadv1.AzureAssignedIdentitySpec{Pod: "refused", PodNamespace: ns}}
		err := k8s.Create(context.Background(), probe)
		if err == nil {
			_ = k8s.Delete(context.Background(), probe)
		}
		return err != nil && strings.Contains(err.Error(), "record refused by the test's policy")
	})
	labelledPod(t, ns, "refused", "metrics-0", "metered")
	eventually(t, "the refused record creation counted", 30*time.Second, func() bool {
		return counterValue(t, "aadpodidentity_kubernetes_api_operations_errors_count", "assigned_identity_addition") > 0
	})
	if err := k8s.Delete(context.Background(), pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the record deleted", 20*time.Second, func() bool {
		return counterValue(t, "aadpodidentity_assigned_identity_deletion_count", "") > 0
	})
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	assertUpstreamMetrics(t, families, upstreamMICMetrics)
	if counterValue(t, "aadpodidentity_mic_new_leader_election_count", "") != 1 {
		t.Error("becoming the leader (at once, without election) was not counted once")
	}
	if counterValue(t, "aadpodidentity_cloud_provider_operations_errors_count", "vmss_update") == 0 {
		t.Error("the refused PATCH was not counted as a vmss_update error")
	}
}

func ptrTo[T any](v T) *T { return &v }
