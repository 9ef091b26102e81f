/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package manager

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// decoded gives each call its own copies of every string, as the watch decoder does for every event.
func decoded[T any](t *testing.T, doc string) *T {
	t.Helper()
	out := new(T)
	if err := json.Unmarshal([]byte(doc), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameStorage(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

const bindingJSON = `{"metadata":{"namespace":"team-a","name":"%s","finalizers":["acrpull.microsoft.com/finalizer"],
  "labels":{"app":"web"},"managedFields":[{"manager":"kubectl"}]},
  "spec":{"acr":{"server":"example.azurecr.io","scope":"repository:app:pull","environment":"PublicCloud"},
    "auth":{"managedIdentity":{"clientID":"00000000-0000-4000-8000-000000000001"}},"serviceAccountName":"default"},
  "status":{"tokenAudience":"https://containerregistry.azure.net","conditions":[{"type":"Ready","status":"True",
    "reason":"TokenMinted","message":"the pull secret holds a current token","lastTransitionTime":"2026-12-06T00:00:00Z"}]}}`

// Two bindings decoded from separate events end up sharing one copy of each repeated string, keep every value,
// and lose their managedFields; names stay their own.
func TestCompactObjectsSharesRepeatedStringsAndKeepsValues(t *testing.T) {
	transform := compactObjects()
	var objs []*acrv1beta2.AcrPullBinding
	for _, name := range []string{"a", "b"} {
		doc := decoded[acrv1beta2.AcrPullBinding](t, fmt.Sprintf(bindingJSON, name))
		want := doc.DeepCopy()
		want.ManagedFields = nil
		out, err := transform(doc)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*acrv1beta2.AcrPullBinding)
		if !equality.Semantic.DeepEqual(got, want) {
			t.Fatalf("transform changed a value:\n got %+v\nwant %+v", got, want)
		}
		objs = append(objs, got)
	}
	a, b := objs[0], objs[1]
	for what, pair := range map[string][2]string{
		"namespace":      {a.Namespace, b.Namespace},
		"finalizer":      {a.Finalizers[0], b.Finalizers[0]},
		"label value":    {a.Labels["app"], b.Labels["app"]},
		"server":         {a.Spec.ACR.Server, b.Spec.ACR.Server},
		"scope":          {a.Spec.ACR.Scope, b.Spec.ACR.Scope},
		"client ID":      {a.Spec.Auth.ManagedIdentity.ClientID, b.Spec.Auth.ManagedIdentity.ClientID},
		"token audience": {a.Status.TokenAudience, b.Status.TokenAudience},
		"reason":         {a.Status.Conditions[0].Reason, b.Status.Conditions[0].Reason},
		"message":        {a.Status.Conditions[0].Message, b.Status.Conditions[0].Message},
	} {
		if !sameStorage(pair[0], pair[1]) {
			t.Errorf("%s %q stored twice", what, pair[0])
		}
	}

	// Secrets are cached as metadata: their annotation keys and shared values, and their owner's kind, too.
	secret := `{"metadata":{"namespace":"team-a","name":"s","annotations":{"acr.microsoft.com/token.expiry":"2026-12-06T01:00:00Z"},
	  "ownerReferences":[{"apiVersion":"acrpull.microsoft.com/v1beta2","kind":"AcrPullBinding","name":"a","uid":"u"}]}}`
	var metas []*metav1.PartialObjectMetadata
	for range 2 {
		out, err := transform(decoded[metav1.PartialObjectMetadata](t, secret))
		if err != nil {
			t.Fatal(err)
		}
		metas = append(metas, out.(*metav1.PartialObjectMetadata))
	}
	keyOf := func(m map[string]string) string {
		for k := range m {
			return k
		}
		return ""
	}
	x, y := metas[0], metas[1]
	if !sameStorage(keyOf(x.Annotations), keyOf(y.Annotations)) || !sameStorage(x.Annotations[keyOf(x.Annotations)], y.Annotations[keyOf(y.Annotations)]) ||
		!sameStorage(x.OwnerReferences[0].Kind, y.OwnerReferences[0].Kind) {
		t.Errorf("secret metadata not shared: %+v", x.ObjectMeta)
	}
	if x.Annotations["acr.microsoft.com/token.expiry"] != "2026-12-06T01:00:00Z" || x.OwnerReferences[0].Name != "a" {
		t.Errorf("secret metadata changed: %+v", x.ObjectMeta)
	}
}

// Objects whose label or annotation maps hold the same entries share one map; any difference in an entry, however
// the keys and values are cut, gives an object a map of its own with exactly its entries.
func TestSharedMapsShareEqualContentsOnly(t *testing.T) {
	table := &sharedMaps{byContents: map[string]map[string]string{}}
	same := func(a, b map[string]string) bool {
		return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
	}
	annotations := func() map[string]string {
		return map[string]string{"acr.microsoft.com/token.expiry": "2026-12-06T01:00:00Z", "acr.microsoft.com/inputs": "abc"}
	}
	first, second := table.share(annotations()), table.share(annotations())
	if !same(first, second) {
		t.Error("two equal annotation maps were not shared")
	}
	if !maps.Equal(first, annotations()) {
		t.Errorf("shared map %v, want %v", first, annotations())
	}
	// Maps a separator-joined key would confuse: the same bytes in another cut.
	for _, other := range []map[string]string{
		{"acr.microsoft.com/token.expiry": "2026-12-06T01:00:00Z"},
		{"acr.microsoft.com/token.expiry": "2026-12-06T01:00:00Z", "acr.microsoft.com/inputs": "abd"},
		{"a": "b\x00c", "d": ""},
		{"a": "b", "c\x00d": ""},
		{"a\x01b": "c"},
		{"a": "\x01bc"},
	} {
		got := table.share(other)
		if same(got, first) || !maps.Equal(got, other) {
			t.Errorf("share(%q) = %q", other, got)
		}
	}
	if a, b := table.share(map[string]string{"a": "b\x00c", "d": ""}), table.share(map[string]string{"a": "b", "c\x00d": ""}); same(a, b) {
		t.Error("maps with different entries share one map")
	}

	// A full table forgets what it shared, and still answers with the right entries.
	for i := range sharedMapsKept + 1 {
		label := map[string]string{"acr.microsoft.com/binding": fmt.Sprint("binding-", i)}
		if got := table.share(label); !maps.Equal(got, label) {
			t.Fatalf("share(%v) = %v", label, got)
		}
	}
	if n := len(table.byContents); n > sharedMapsKept {
		t.Errorf("table holds %d maps, at most %d wanted", n, sharedMapsKept)
	}
	if got := table.share(annotations()); same(got, first) || !maps.Equal(got, annotations()) {
		t.Errorf("after the table was cleared: %v (same map as before: %v)", got, same(got, first))
	}
	// A large map is copied, not kept.
	large := map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", sharedMapLargest)}
	before := len(table.byContents)
	if got := table.share(large); !maps.Equal(got, large) || len(table.byContents) != before {
		t.Errorf("a large map: kept %d maps more, contents equal: %v", len(table.byContents)-before, maps.Equal(got, large))
	}
	if empty := table.share(nil); empty != nil {
		t.Errorf("share(nil) = %v", empty)
	}
}
