/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic_test

import (
	"context"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/mic"
)

const legacyResourceID = "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/legacy"

// legacyIdentity is an AzureIdentity as written before v1.6, as unstructured content (numbers as int64, as the
// apiserver returns them).
func legacyIdentity() map[string]any {
	return map[string]any{
		"apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
		"metadata": map[string]any{"name": "legacy", "namespace": "apps", "labels": map[string]any{"ResourceID": "kept"}},
		"spec": map[string]any{
			"Type": int64(1), "ResourceID": legacyResourceID, "ClientID": "client", "TenantID": "tenant",
			"ClientPassword":     map[string]any{"Name": "sp-secret", "Namespace": "apps"},
			"AuxiliaryTenantIDs": []any{"aux"}, "ADEndpoint": "https://login.microsoftonline.com/",
			"unknownToAcrpull": "kept",
		},
	}
}

// Objects written before v1.6 decode into the API's fields once their keys are renamed; metadata, data keys (labels,
// podLabels) and unknown keys stay as they were.
func TestLegacyFieldsAreRenamed(t *testing.T) {
	obj := legacyIdentity()
	if !mic.UpgradeLegacyFields(reflect.TypeFor[aadv1.AzureIdentity](), obj) {
		t.Fatal("legacy keys not reported as changed")
	}
	var id aadv1.AzureIdentity
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &id); err != nil {
		t.Fatal(err)
	}
	want := aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ResourceID: legacyResourceID, ClientID: "client", TenantID: "tenant",
		ClientPassword: corev1.SecretReference{Name: "sp-secret", Namespace: "apps"}, AuxiliaryTenantIDs: []string{"aux"},
		ADEndpoint: "https://login.microsoftonline.com/"}
	if !reflect.DeepEqual(id.Spec, want) {
		t.Errorf("spec %+v\nwant %+v", id.Spec, want)
	}
	spec := obj["spec"].(map[string]any)
	if spec["unknownToAcrpull"] != "kept" || id.Labels["ResourceID"] != "kept" {
		t.Errorf("unknown keys or labels changed: %v %v", spec, id.Labels)
	}
	if _, legacy := spec["ResourceID"]; legacy {
		t.Error("legacy key left next to the canonical one")
	}
	// Canonical content is left alone, so the upgrade writes nothing back.
	if mic.UpgradeLegacyFields(reflect.TypeFor[aadv1.AzureIdentity](), obj) {
		t.Error("an upgraded object reported as changed again")
	}

	// Records embed whole identities and bindings: their legacy keys are renamed too.
	record := map[string]any{
		"metadata": map[string]any{"name": "r"},
		"Spec": map[string]any{
			"AzureIdentityRef": map[string]any{"metadata": map[string]any{"name": "legacy"}, "Spec": map[string]any{"ResourceID": legacyResourceID}},
			"AzureBindingRef":  map[string]any{"Spec": map[string]any{"AzureIdentity": "legacy", "Selector": "web"}},
			"Pod":              "web-0", "PodNamespace": "apps", "NodeName": "node-a",
		},
		"Status": map[string]any{"Status": "Assigned"},
	}
	if !mic.UpgradeLegacyFields(reflect.TypeFor[aadv1.AzureAssignedIdentity](), record) {
		t.Fatal("legacy record keys not reported as changed")
	}
	var rec aadv1.AzureAssignedIdentity
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(record, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Spec.AzureIdentityRef == nil || rec.Spec.AzureIdentityRef.Spec.ResourceID != legacyResourceID ||
		rec.Spec.AzureBindingRef == nil || rec.Spec.AzureBindingRef.Spec.Selector != "web" || rec.Spec.AzureBindingRef.Spec.AzureIdentity != "legacy" ||
		rec.Spec.Pod != "web-0" || rec.Spec.NodeName != "node-a" || rec.Status.Status != aadv1.AssignedIDAssigned {
		t.Errorf("record %+v", rec)
	}

	// podLabels' keys are the pods' label keys, not fields: never renamed.
	exception := map[string]any{"Spec": map[string]any{"PodLabels": map[string]any{"App": "mic", "Spec": "x"}}}
	mic.UpgradeLegacyFields(reflect.TypeFor[aadv1.AzurePodIdentityException](), exception)
	labels := exception["spec"].(map[string]any)["podLabels"].(map[string]any)
	if !reflect.DeepEqual(labels, map[string]any{"App": "mic", "Spec": "x"}) {
		t.Errorf("podLabels %v", labels)
	}

	// Both spellings: the canonical one, written by a newer client, wins.
	both := map[string]any{"spec": map[string]any{"Selector": "old", "selector": "new"}}
	if !mic.UpgradeLegacyFields(reflect.TypeFor[aadv1.AzureIdentityBinding](), both) {
		t.Error("a legacy duplicate not reported as changed")
	}
	if !reflect.DeepEqual(both["spec"], map[string]any{"selector": "new"}) {
		t.Errorf("spec %v", both["spec"])
	}
}

// The CRDs acrpull installs prune unknown fields, legacy-cased ones included: through the apiserver a legacy object
// cannot be stored, nor (pruning applies on read too) seen. This is why the upgrade finds nothing on such clusters;
// if the CRDs ever preserve unknown fields, this test fails and the upgrade starts to matter.
func TestAPIServerPrunesLegacyFields(t *testing.T) {
	ns := newNamespace(t)
	obj := &unstructured.Unstructured{Object: legacyIdentity()}
	obj.SetNamespace(ns)
	spec := obj.Object["spec"].(map[string]any)
	spec["type"], spec["clientID"] = int64(0), "00000000-0000-0000-0000-0000000000d1"
	delete(spec, "Type")
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(aadv1.GroupVersion.WithKind("AzureIdentity"))
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), got); err != nil {
		t.Fatal(err)
	}
	stored := got.Object["spec"].(map[string]any)
	for _, legacy := range []string{"ResourceID", "ClientID", "TenantID", "ClientPassword", "unknownToAcrpull"} {
		if _, ok := stored[legacy]; ok {
			t.Errorf("the apiserver kept %s: %v", legacy, stored)
		}
	}
	if stored["clientID"] != "00000000-0000-0000-0000-0000000000d1" {
		t.Errorf("stored spec %v", stored)
	}
}

// legacyReader lists what the apiserver has, with one object's spec replaced by legacy-cased content: what an
// apiserver without pruning (upstream's pre-v1.8 CRDs) returns for an object written before v1.6.
type legacyReader struct {
	client.Reader
	namespace, name string
	spec            map[string]any
}

func (r legacyReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := r.Reader.List(ctx, list, opts...); err != nil {
		return err
	}
	if u, ok := list.(*unstructured.UnstructuredList); ok {
		for i := range u.Items {
			if u.Items[i].GetNamespace() == r.namespace && u.Items[i].GetName() == r.name {
				u.Items[i].Object["spec"] = runtime.DeepCopyJSONValue(r.spec)
			}
		}
	}
	return nil
}

// The upgrade runs once per cluster: it writes back objects with legacy keys (and nothing else), then records the
// version in the ConfigMap, keeping the ConfigMap's other keys; with the key present it does nothing.
func TestTypeUpgradeRunsOnce(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	legacy := &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"},
		Spec: aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: "00000000-0000-0000-0000-0000000000d2"}}
	current := &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "current"},
		Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "legacy", Selector: "web"}}
	create(t, legacy)
	create(t, current)
	// The ConfigMap exists with another key, as upstream's chart may have left it.
	create(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: mic.TypeUpgradeConfigMap},
		Data: map[string]string{"other": "kept"}})

	reader := legacyReader{Reader: k8s, namespace: ns, name: "legacy", spec: map[string]any{
		"Type": int64(0), "ClientID": "00000000-0000-0000-0000-0000000000d2", "ResourceID": legacyResourceID}}
	res, err := mic.UpgradeTypes(ctx, reader, k8s, ns, "acrpull-mic test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || res.Rewritten != 1 {
		t.Errorf("result %+v, want one object rewritten", res)
	}
	got := &aadv1.AzureIdentity{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(legacy), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.ResourceID != legacyResourceID || got.Spec.ClientID != legacy.Spec.ClientID {
		t.Errorf("rewritten identity %+v", got.Spec)
	}
	gotBinding := &aadv1.AzureIdentityBinding{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(current), gotBinding); err != nil {
		t.Fatal(err)
	}
	if gotBinding.ResourceVersion != current.ResourceVersion {
		t.Error("an object with canonical keys was written back")
	}
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: mic.TypeUpgradeConfigMap}, cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data[mic.TypeUpgradeStatusKey] != "acrpull-mic test" || cm.Data["other"] != "kept" {
		t.Errorf("ConfigMap data %v", cm.Data)
	}

	// Recorded: a second start changes nothing, even with legacy content in sight.
	before := got.ResourceVersion
	res, err = mic.UpgradeTypes(ctx, reader, k8s, ns, "acrpull-mic later")
	if err != nil || !res.Skipped || res.Rewritten != 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(legacy), got); err != nil || got.ResourceVersion != before {
		t.Errorf("second run wrote the identity (%v)", err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil || cm.Data[mic.TypeUpgradeStatusKey] != "acrpull-mic test" {
		t.Errorf("second run changed the ConfigMap: %v %v", cm.Data, err)
	}
}

// Without the ConfigMap, on a cluster of current objects: nothing is written back and the ConfigMap is created.
func TestTypeUpgradeCreatesTheConfigMap(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	id := &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "current"},
		Spec: aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: "00000000-0000-0000-0000-0000000000d3"}}
	create(t, id)
	res, err := mic.UpgradeTypes(ctx, k8s, k8s, ns, "acrpull-mic test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || res.Rewritten != 0 {
		t.Errorf("result %+v: the apiserver holds no legacy objects", res)
	}
	got := &aadv1.AzureIdentity{}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(id), got); err != nil || got.ResourceVersion != id.ResourceVersion {
		t.Errorf("current identity written back (%v)", err)
	}
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: mic.TypeUpgradeConfigMap}, cm); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cm.Data, map[string]string{mic.TypeUpgradeStatusKey: "acrpull-mic test"}) {
		t.Errorf("ConfigMap data %v", cm.Data)
	}
}
