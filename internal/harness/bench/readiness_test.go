/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/dockerconfig"
)

func newReadiness() *readiness {
	return &readiness{bindings: map[string]bindingView{}, secrets: map[string]map[string]secretView{},
		accounts: map[string]map[string]bool{}, byAccount: map[string]map[string]bool{},
		usable: map[string]bool{}, ready: map[string]bool{}, current: map[string]bool{},
		usableAt: map[string]time.Time{}, readyAt: map[string]time.Time{}, currentAt: map[string]time.Time{}, secretAt: map[string]time.Time{}}
}

// A binding is usable, whichever controller serves it, only once all three hold: a labelled secret with a token
// for the registry, that secret listed by the binding's service account, and status.tokenExpirationTime set. It is
// current once the status names the secret's expiry and has no error; losing any part makes it unusable again.
func TestBindingIsUsableOnlyWithTokenAttachmentAndExpiry(t *testing.T) {
	r := newReadiness()
	expiry := time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC)
	bnd := newBinding("ns", "app-1", 0)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pull-1",
		Labels: map[string]string{bindingLabel: "app-1"}, Annotations: map[string]string{expiryAnnotation: expiry.Format(time.RFC3339)}}}
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "default"}}
	check := func(step string, usable, current bool) {
		t.Helper()
		u, _, c := r.counts("app-")
		if (u == 1) != usable || (c == 1) != current {
			t.Fatalf("%s: usable %d current %d, want usable %v current %v", step, u, c, usable, current)
		}
	}

	r.observeBinding(bnd, false)
	r.observeAccount(account, false)
	r.observeSecret(secret, false)
	check("secret without a token", false, false)

	payload, err := dockerconfig.Render(registryHost, "token")
	if err != nil {
		t.Fatal(err)
	}
	secret.Data = map[string][]byte{corev1.DockerConfigJsonKey: payload}
	r.observeSecret(secret, false)
	check("token, not attached", false, false)

	account.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull-1"}}
	r.observeAccount(account, false)
	check("attached, no expiry in status", false, false)

	bnd.Status.TokenExpirationTime = &metav1.Time{Time: expiry.Add(-time.Minute)}
	r.observeBinding(bnd, false)
	check("expiry in status, an older one", true, false)
	if _, ok := r.firstUsable("ns/app-1"); !ok {
		t.Fatal("no time recorded for the first usable moment")
	}
	if _, ready, _ := r.counts("app-"); ready != 0 {
		t.Fatal("Ready counted without the condition")
	}

	bnd.Status.TokenExpirationTime = &metav1.Time{Time: expiry}
	bnd.Status.Conditions = []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: metav1.ConditionTrue}}
	r.observeBinding(bnd, false)
	check("status current", true, true)
	if _, ready, _ := r.counts("app-"); ready != 1 {
		t.Fatal("Ready condition not counted")
	}
	if u, _, _ := r.counts("other-"); u != 0 {
		t.Fatal("counted under another prefix")
	}

	r.observeSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pull-1", Labels: map[string]string{bindingLabel: "app-1"}},
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"other.azurecr.io":{"password":"x"}}}`)}}, false)
	check("token for another registry", false, false)
	r.observeSecret(secret, false)
	check("token back", true, true)
	since := time.Now()

	account.ImagePullSecrets = nil
	r.observeAccount(account, false)
	check("detached", false, false)
	if r.currentSince("app-", since) != 1 || r.currentSince("app-", time.Now().Add(time.Second)) != 0 {
		t.Fatal("a binding current a moment ago counts as current since then, and only since then")
	}
	account.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull-1"}}
	r.observeAccount(account, false)
	r.observeBinding(bnd, true)
	check("binding deleted", false, false)
}

// The steady scenario's refresh log counts a secret's token changes only while it is kept, per secret, and flags a
// change that follows the previous one too soon; a secret written again with the same expiry is not a refresh.
func TestRefreshLogCountsTokenChangesWhileKept(t *testing.T) {
	r := newReadiness()
	secret := func(expiry string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pull-1",
			Labels: map[string]string{bindingLabel: "app-1"}, Annotations: map[string]string{expiryAnnotation: expiry}}}
	}
	r.observeSecret(secret("t1"), false)
	r.observeSecret(secret("t2"), false) // before the log: counted in refreshCount only
	r.startRefreshLog()
	r.observeSecret(secret("t2"), false) // same expiry: not a refresh
	r.observeSecret(secret("t3"), false)
	r.observeSecret(secret("t4"), false)
	log := r.stopRefreshLog()
	r.observeSecret(secret("t5"), false) // after the log
	if log.count() != 2 || len(log.times["ns/pull-1"]) != 2 {
		t.Fatalf("log counted %d changes, %d for the secret; want 2", log.count(), len(log.times["ns/pull-1"]))
	}
	if _, duplicates := log.intervals(time.Hour); duplicates != 1 {
		t.Fatalf("%d changes within the hour after the previous, want 1", duplicates)
	}
	if _, duplicates := log.intervals(0); duplicates != 0 {
		t.Fatalf("%d changes flagged with no minimum gap, want 0", duplicates)
	}
	if got := r.refreshCount(); got != 4 {
		t.Fatalf("refreshCount %d, want 4", got)
	}
}
