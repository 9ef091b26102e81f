/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

func rid(name string) string {
	return "/subscriptions/s/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + name
}

func identity(ns, name string, typ aadv1.IdentityType) aadv1.AzureIdentity {
	return aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1"},
		Spec: aadv1.AzureIdentitySpec{Type: typ, ClientID: "c-" + name, ResourceID: rid(name)}}
}

func binding(ns, name, id, selector string) aadv1.AzureIdentityBinding {
	return aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1"},
		Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: id, Selector: selector}}
}

func pod(ns, name, node, label string, phase corev1.PodPhase) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{aadv1.PodLabel: label}},
		Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
}

func names(as []aadv1.AzureAssignedIdentity) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Namespace+"/"+a.Name)
	}
	slices.Sort(out)
	return out
}

func TestAssignedName(t *testing.T) {
	if got := AssignedName("web", "shop", "id"); got != "web-shop-id" {
		t.Errorf("got %q, upstream's name is web-shop-id", got)
	}
	long := AssignedName(strings.Repeat("p", 200), "ns", strings.Repeat("i", 100))
	other := AssignedName(strings.Repeat("p", 200), "ns", strings.Repeat("i", 99)+"j")
	if len(long) > 253 || long == other {
		t.Errorf("long names must fit and stay unique: %d chars, equal=%v", len(long), long == other)
	}
}

func TestDesired(t *testing.T) {
	ids := []aadv1.AzureIdentity{identity("a", "msi", aadv1.UserAssignedMSI), identity("a", "sp", aadv1.ServicePrincipal)}
	nsID := identity("a", "msi-ns", aadv1.UserAssignedMSI)
	nsID.Annotations = map[string]string{aadv1.BehaviorAnnotation: aadv1.BehaviorNamespaced}
	ids = append(ids, nsID)
	bs := []aadv1.AzureIdentityBinding{binding("a", "b1", "msi", "web"), binding("a", "b2", "sp", "web"), binding("a", "b3", "msi-ns", "web")}
	pods := []corev1.Pod{
		pod("a", "p1", "n1", "web", corev1.PodRunning),
		pod("b", "p2", "n2", "web", corev1.PodPending),
		pod("a", "unscheduled", "", "web", corev1.PodPending),
		pod("a", "done", "n1", "web", corev1.PodSucceeded),
	}
	got := Desired(pods, bs, ids, false)
	want := []string{"a/p1-a-msi-ns", "default/p1-a-msi", "default/p2-b-msi"}
	if !slices.Equal(names(got), want) {
		t.Fatalf("got %v, want %v (service principals are not assigned; namespaced identities' records live with them)", names(got), want)
	}
	for _, a := range got {
		if a.Labels[aadv1.NodeNameLabel] != a.Spec.NodeName || a.Spec.AzureIdentityRef.ResourceVersion != "1" {
			t.Errorf("%s: label %v, identity ref %+v", a.Name, a.Labels, a.Spec.AzureIdentityRef.ObjectMeta)
		}
	}
	if got := names(Desired(pods, bs, ids, true)); !slices.Equal(got, []string{"a/p1-a-msi", "a/p1-a-msi-ns"}) {
		t.Errorf("forced namespaced: %v", got)
	}
}

func TestDiff(t *testing.T) {
	ids := []aadv1.AzureIdentity{identity("a", "msi", aadv1.UserAssignedMSI)}
	bs := []aadv1.AzureIdentityBinding{binding("a", "b", "msi", "web")}
	desired := Desired([]corev1.Pod{pod("a", "keep", "n1", "web", corev1.PodRunning), pod("a", "new", "n1", "web", corev1.PodRunning),
		pod("a", "moved", "n2", "web", corev1.PodRunning), pod("a", "retry", "n1", "web", corev1.PodRunning)}, bs, ids, false)
	current := Desired([]corev1.Pod{pod("a", "keep", "n1", "web", corev1.PodRunning), pod("a", "moved", "n1", "web", corev1.PodRunning),
		pod("a", "retry", "n1", "web", corev1.PodRunning), pod("a", "gone", "n1", "web", corev1.PodRunning)}, bs, ids, false)
	for i := range current {
		current[i].ResourceVersion = "7"
		current[i].Status.Status = aadv1.AssignedIDAssigned
		if current[i].Spec.Pod == "retry" {
			current[i].Status.Status = aadv1.AssignedIDCreated
		}
	}
	ch := Diff(desired, current)
	if got := names(ch.Create); !slices.Equal(got, []string{"default/new-a-msi", "default/retry-a-msi"}) {
		t.Errorf("create %v", got)
	}
	if got := names(ch.Update); !slices.Equal(got, []string{"default/moved-a-msi"}) || ch.Update[0].ResourceVersion != "7" || ch.Update[0].Spec.NodeName != "n2" {
		t.Errorf("update %v (must keep metadata, take the new spec)", got)
	}
	if got := names(ch.Delete); !slices.Equal(got, []string{"default/gone-a-msi"}) {
		t.Errorf("delete %v", got)
	}
	// A new version of the identity makes every record of it an update.
	ids[0].ResourceVersion = "2"
	if ch := Diff(Desired([]corev1.Pod{pod("a", "keep", "n1", "web", corev1.PodRunning)}, bs, ids, false), current[:1]); len(ch.Update) != 1 {
		t.Errorf("identity changed: %d updates, want 1", len(ch.Update))
	}
}

func TestHostOf(t *testing.T) {
	vm, err := HostOf("azure:///subscriptions/S/resourceGroups/MC_rg/providers/Microsoft.Compute/virtualMachines/aks-node-0")
	if err != nil || vm.ScaleSet || vm.Name != "aks-node-0" {
		t.Errorf("vm: %+v %v", vm, err)
	}
	ss, err := HostOf("azure:///subscriptions/S/resourceGroups/MC_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool-1/virtualMachines/3")
	if err != nil || !ss.ScaleSet || ss.Name != "aks-pool-1" {
		t.Errorf("vmss: %+v %v", ss, err)
	}
	if ss.ID() != "/subscriptions/s/resourcegroups/mc_rg/providers/microsoft.compute/virtualmachinescalesets/aks-pool-1" {
		t.Errorf("id %s", ss.ID())
	}
	for _, bad := range []string{"", "kind://node", "azure:///subscriptions/S/resourceGroups/rg/providers/Microsoft.Network/x/y",
		"azure:///subscriptions/S/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool"} {
		if _, err := HostOf(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPlanHostsRemovesOnlyWhatIsSafe(t *testing.T) {
	poolA := Host{ScaleSet: true, Subscription: "s", ResourceGroup: "rg", Name: "pool-a"}
	poolB := Host{ScaleSet: true, Subscription: "s", ResourceGroup: "rg", Name: "pool-b"}
	hosts := map[string]Host{"a1": poolA, "a2": poolA, "b1": poolB}
	ids := []aadv1.AzureIdentity{identity("x", "shared", aadv1.UserAssignedMSI), identity("x", "immutable", aadv1.UserAssignedMSI),
		identity("x", "kubelet", aadv1.UserAssignedMSI), identity("x", "theirs", aadv1.UserAssignedMSI), identity("x", "new", aadv1.UserAssignedMSI)}
	bs := []aadv1.AzureIdentityBinding{binding("x", "s", "shared", "shared"), binding("x", "i", "immutable", "immutable"),
		binding("x", "k", "kubelet", "kubelet"), binding("x", "t", "theirs", "theirs"), binding("x", "n", "new", "new")}
	rec := func(p corev1.Pod) aadv1.AzureAssignedIdentity { return Desired([]corev1.Pod{p}, bs, ids, false)[0] }

	stillOnA := rec(pod("x", "stays", "a2", "shared", corev1.PodRunning))
	preexisting := rec(pod("x", "p4", "a1", "theirs", corev1.PodRunning))
	preexisting.Annotations = map[string]string{PreexistingAnnotation: "true"}
	ch := Changes{
		Create: []aadv1.AzureAssignedIdentity{rec(pod("x", "p0", "b1", "new", corev1.PodRunning))},
		Delete: []aadv1.AzureAssignedIdentity{
			rec(pod("x", "p1", "a1", "shared", corev1.PodRunning)), // another pod on pool-a still uses it
			rec(pod("x", "p2", "b1", "shared", corev1.PodRunning)), // nobody on pool-b does
			rec(pod("x", "p3", "a1", "immutable", corev1.PodRunning)),
			rec(pod("x", "p5", "a1", "kubelet", corev1.PodRunning)),
			preexisting,
			rec(pod("x", "p6", "gone-node", "shared", corev1.PodRunning)),
		},
	}
	after := append([]aadv1.AzureAssignedIdentity{stillOnA}, ch.Create...)
	plan := PlanHosts(ch, after, hosts, Policy{ImmutableClientIDs: []string{"C-IMMUTABLE"}, ClusterIdentityResourceIDs: []string{rid("kubelet")}})
	want := map[Host]HostChange{poolB: {Add: []string{strings.ToLower(rid("new"))}, Remove: []string{strings.ToLower(rid("shared"))}}}
	if len(plan) != len(want) || !slices.Equal(plan[poolB].Add, want[poolB].Add) || !slices.Equal(plan[poolB].Remove, want[poolB].Remove) {
		t.Fatalf("plan %+v, want %+v (pool-a keeps everything)", plan, want)
	}
}

func TestBatches(t *testing.T) {
	var c HostChange
	for i := range 200 {
		c.Add = append(c.Add, fmt.Sprintf("add-%d", i))
	}
	for i := range 100 {
		c.Remove = append(c.Remove, fmt.Sprintf("rm-%d", i))
	}
	bs := Batches(c, MaxIdentitiesPerPatch)
	if len(bs) != 2 || len(bs[0].Add) != 150 || len(bs[1].Add) != 50 || len(bs[1].Remove) != 100 {
		t.Fatalf("batches %d: %d+%d, then %d+%d", len(bs), len(bs[0].Add), len(bs[0].Remove), len(bs[1].Add), len(bs[1].Remove))
	}
	if len(Batches(HostChange{}, 150)) != 0 {
		t.Error("an empty change is no PATCH")
	}
}
