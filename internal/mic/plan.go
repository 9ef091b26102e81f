/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package mic plans what AAD Pod Identity's assignment controller (MIC) does in "standard" mode: which
// AzureAssignedIdentity records should exist for the labelled pods, and which user-assigned identities to add to and
// remove from each VM or VM scale set so that the node's instance metadata service can issue their tokens.
//
// Planning is kept apart from doing (ARM calls, apiserver writes) so the safety rules are plain functions with
// tests: an identity is removed from a VM or scale set only if acrpull assigned it, no other pod on that VM or scale
// set still uses it, and it is neither immutable nor the cluster's own.
package mic

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/podidentity"
)

// PreexistingAnnotation on an AzureAssignedIdentity records that its identity was already on the VM or scale set when
// acrpull assigned it: someone else put it there, so acrpull never removes it.
const PreexistingAnnotation = "acrpull.microsoft.com/identity-preexisting"

// DefaultNamespace holds AzureAssignedIdentities outside namespaced mode, as upstream does.
const DefaultNamespace = "default"

// maxNameLength is the longest object name the apiserver takes.
const maxNameLength = 253

// AssignedName is upstream's AzureAssignedIdentity name, <pod>-<pod namespace>-<identity>. Names too long for the
// apiserver, which upstream failed to create, are shortened with a hash that keeps them unique.
func AssignedName(pod, podNamespace, identity string) string {
	name := pod + "-" + podNamespace + "-" + identity
	if len(name) <= maxNameLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:8])
	return strings.TrimRight(name[:maxNameLength-len(suffix)], "-.") + suffix
}

// Desired returns the AzureAssignedIdentities the pods call for: one per scheduled pod and identity bound to it,
// where the identity is a user-assigned managed identity (only those live on VMs) named by resource ID. The first
// binding wins when two would give the same name (upstream #1065).
func Desired(pods []corev1.Pod, bindings []aadv1.AzureIdentityBinding, identities []aadv1.AzureIdentity, forceNamespaced bool) []aadv1.AzureAssignedIdentity {
	var out []aadv1.AzureAssignedIdentity
	seen := map[string]bool{}
	for i := range pods {
		pod := &pods[i]
		if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, m := range podidentity.Matches(pod, bindings, identities, forceNamespaced) {
			if m.Identity.Spec.Type != aadv1.UserAssignedMSI || m.Identity.Spec.ResourceID == "" {
				continue
			}
			ns := DefaultNamespace
			if forceNamespaced || m.Identity.IsNamespaced() {
				ns = m.Identity.Namespace
			}
			name := AssignedName(pod.Name, pod.Namespace, m.Identity.Name)
			identityRef, bindingRef := m.Identity.DeepCopy(), m.Binding.DeepCopy()
			// Embedded resources carry their kind, and no managed fields (they are the apiserver's, not the copy's).
			identityRef.TypeMeta = metav1.TypeMeta{APIVersion: aadv1.GroupVersion.String(), Kind: "AzureIdentity"}
			bindingRef.TypeMeta = metav1.TypeMeta{APIVersion: aadv1.GroupVersion.String(), Kind: "AzureIdentityBinding"}
			identityRef.ManagedFields, bindingRef.ManagedFields = nil, nil
			if seen[ns+"/"+name] {
				continue
			}
			seen[ns+"/"+name] = true
			out = append(out, aadv1.AzureAssignedIdentity{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
					Labels: map[string]string{aadv1.NodeNameLabel: pod.Spec.NodeName}},
				Spec: aadv1.AzureAssignedIdentitySpec{
					AzureIdentityRef: identityRef,
					AzureBindingRef:  bindingRef,
					Pod:              pod.Name,
					PodNamespace:     pod.Namespace,
					NodeName:         pod.Spec.NodeName,
				},
			})
		}
	}
	return out
}

// Changes are the record writes a cycle makes.
type Changes struct {
	Create, Update, Delete []aadv1.AzureAssignedIdentity
}

// Diff compares desired records with current ones. A current record matches a desired one when both name the same
// pod, namespace, node, and the same versions of binding and identity. Records still Created (their assignment not
// yet confirmed) are retried by creating them again; records of the same name that no longer match are updated,
// keeping their metadata; the rest are deleted.
func Diff(desired, current []aadv1.AzureAssignedIdentity) Changes {
	var ch Changes
	byName := map[string]*aadv1.AzureAssignedIdentity{}
	for i := range current {
		byName[current[i].Namespace+"/"+current[i].Name] = &current[i]
	}
	kept := map[string]bool{}
	for _, d := range desired {
		key := d.Namespace + "/" + d.Name
		cur := byName[key]
		switch {
		case cur == nil:
			ch.Create = append(ch.Create, d)
		case !sameAssignment(cur, &d):
			upd := cur.DeepCopy()
			upd.Labels = d.Labels
			upd.Spec = d.Spec
			ch.Update = append(ch.Update, *upd)
		case cur.Status.Status == aadv1.AssignedIDCreated:
			ch.Create = append(ch.Create, *cur.DeepCopy())
		}
		kept[key] = true
	}
	for _, c := range current {
		if !kept[c.Namespace+"/"+c.Name] {
			ch.Delete = append(ch.Delete, c)
		}
	}
	return ch
}

func sameAssignment(a, b *aadv1.AzureAssignedIdentity) bool {
	return a.Spec.Pod == b.Spec.Pod && a.Spec.PodNamespace == b.Spec.PodNamespace && a.Spec.NodeName == b.Spec.NodeName &&
		sameObject(&a.Spec.AzureIdentityRef.ObjectMeta, &b.Spec.AzureIdentityRef.ObjectMeta, a.Spec.AzureIdentityRef != nil, b.Spec.AzureIdentityRef != nil) &&
		sameObject(&a.Spec.AzureBindingRef.ObjectMeta, &b.Spec.AzureBindingRef.ObjectMeta, a.Spec.AzureBindingRef != nil, b.Spec.AzureBindingRef != nil)
}

func sameObject(a, b *metav1.ObjectMeta, aSet, bSet bool) bool {
	if !aSet || !bSet {
		return aSet == bSet
	}
	return a.Name == b.Name && a.Namespace == b.Namespace && a.ResourceVersion == b.ResourceVersion
}

// Host is the VM or VM scale set a node runs on, the unit whose identity block ARM updates.
type Host struct {
	// ScaleSet is true for a VM scale set, false for a standalone VM.
	ScaleSet      bool
	Subscription  string
	ResourceGroup string
	Name          string
}

// ID is the host's ARM resource ID (lowercased: ARM compares resource IDs case-insensitively).
func (h Host) ID() string {
	kind := "virtualmachines"
	if h.ScaleSet {
		kind = "virtualmachinescalesets"
	}
	return strings.ToLower(fmt.Sprintf("/subscriptions/%s/resourcegroups/%s/providers/microsoft.compute/%s/%s",
		h.Subscription, h.ResourceGroup, kind, h.Name))
}

// HostOf reads the VM or scale set from a node's spec.providerID, as the Azure cloud provider writes it:
// azure:///subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachines/<vm> or
// .../virtualMachineScaleSets/<vmss>/virtualMachines/<instance>.
func HostOf(providerID string) (Host, error) {
	rest, ok := strings.CutPrefix(providerID, "azure://")
	if !ok {
		return Host{}, fmt.Errorf("provider ID %q is not an Azure one (azure:///subscriptions/...)", providerID)
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	if len(parts) < 8 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourceGroups") ||
		!strings.EqualFold(parts[4], "providers") || !strings.EqualFold(parts[5], "Microsoft.Compute") {
		return Host{}, fmt.Errorf("provider ID %q does not name a Microsoft.Compute resource", providerID)
	}
	h := Host{Subscription: parts[1], ResourceGroup: parts[3], Name: parts[7]}
	switch {
	case strings.EqualFold(parts[6], "virtualMachines") && len(parts) == 8:
	case strings.EqualFold(parts[6], "virtualMachineScaleSets") && len(parts) == 10 && strings.EqualFold(parts[8], "virtualMachines"):
		h.ScaleSet = true
	default:
		return Host{}, fmt.Errorf("provider ID %q names neither a VM nor a scale-set instance", providerID)
	}
	return h, nil
}

// HostChange is what one ARM PATCH of a host's identity block adds and removes (lowercased resource IDs, sorted).
type HostChange struct {
	Add, Remove []string
}

// Policy is what must never be removed.
type Policy struct {
	// ImmutableClientIDs are identities (by client ID) never removed (--immutable-user-msis).
	ImmutableClientIDs []string
	// ClusterIdentityResourceIDs are the cluster's own identities (kubelet's), never removed.
	ClusterIdentityResourceIDs []string
}

// PlanHosts turns record changes into one change per host. hosts maps node names to hosts; records on nodes with no
// known host are skipped (a deleted node: its VM is gone, so nothing to remove). after are the records that remain
// once the changes are made (kept, created and updated ones): an identity any of them still uses on a host stays
// there. Removal also spares preexisting, immutable and cluster identities.
func PlanHosts(ch Changes, after []aadv1.AzureAssignedIdentity, hosts map[string]Host, policy Policy) map[Host]HostChange {
	inUse := map[Host]map[string]bool{}
	for _, a := range after {
		h, ok := hosts[a.Spec.NodeName]
		if !ok || a.Spec.AzureIdentityRef == nil {
			continue
		}
		if inUse[h] == nil {
			inUse[h] = map[string]bool{}
		}
		inUse[h][strings.ToLower(a.Spec.AzureIdentityRef.Spec.ResourceID)] = true
	}
	adds, removes := map[Host]map[string]bool{}, map[Host]map[string]bool{}
	mark := func(m map[Host]map[string]bool, h Host, id string) {
		if m[h] == nil {
			m[h] = map[string]bool{}
		}
		m[h][id] = true
	}
	for _, a := range append(slices.Clone(ch.Create), ch.Update...) {
		if h, ok := hosts[a.Spec.NodeName]; ok && a.Spec.AzureIdentityRef != nil {
			mark(adds, h, strings.ToLower(a.Spec.AzureIdentityRef.Spec.ResourceID))
		}
	}
	for _, d := range ch.Delete {
		h, ok := hosts[d.Spec.NodeName]
		if !ok || d.Spec.AzureIdentityRef == nil || d.Annotations[PreexistingAnnotation] == "true" {
			continue
		}
		id := d.Spec.AzureIdentityRef
		rid := strings.ToLower(id.Spec.ResourceID)
		if id.Spec.Type != aadv1.UserAssignedMSI || rid == "" || inUse[h][rid] ||
			slices.ContainsFunc(policy.ImmutableClientIDs, func(c string) bool { return strings.EqualFold(c, id.Spec.ClientID) }) ||
			slices.ContainsFunc(policy.ClusterIdentityResourceIDs, func(r string) bool { return strings.EqualFold(r, rid) }) {
			continue
		}
		mark(removes, h, rid)
	}
	out := map[Host]HostChange{}
	for h, ids := range adds {
		c := out[h]
		for id := range ids {
			c.Add = append(c.Add, id)
		}
		slices.Sort(c.Add)
		out[h] = c
	}
	for h, ids := range removes {
		c := out[h]
		for id := range ids {
			if !adds[h][id] {
				c.Remove = append(c.Remove, id)
			}
		}
		slices.Sort(c.Remove)
		if len(c.Add)+len(c.Remove) > 0 {
			out[h] = c
		}
	}
	return out
}

// MaxIdentitiesPerPatch is how many user-assigned identities one ARM PATCH may carry, as upstream learned.
const MaxIdentitiesPerPatch = 150

// Batches splits a host change into PATCHes of at most max identities, additions first, so a cycle that both adds
// and removes many identities still sends the fewest requests.
func Batches(c HostChange, max int) []HostChange {
	var out []HostChange
	cur := HostChange{}
	size := 0
	flush := func() {
		if size > 0 {
			out = append(out, cur)
			cur, size = HostChange{}, 0
		}
	}
	for _, id := range c.Add {
		if size == max {
			flush()
		}
		cur.Add = append(cur.Add, id)
		size++
	}
	for _, id := range c.Remove {
		if size == max {
			flush()
		}
		cur.Remove = append(cur.Remove, id)
		size++
	}
	flush()
	return out
}
