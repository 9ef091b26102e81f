/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package pulldiagnosis

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

func pullSecret(name string, registries ...string) *corev1.Secret {
	var auths []string
	for _, r := range registries {
		auths = append(auths, `"`+r+`":{"username":"00000000-0000-0000-0000-000000000000","password":"p","auth":"eDpw"}`)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{` + strings.Join(auths, ",") + `}}`)}}
}

// Which secrets kubelet would use for an image: its keyring's rules, not string equality of hosts.
func TestSecretCoversFollowsKubeletMatching(t *testing.T) {
	for _, tc := range []struct {
		key, image string
		covers     bool
	}{
		{"demo.azurecr.io", "demo.azurecr.io/hello:v1", true},
		{"https://demo.azurecr.io", "demo.azurecr.io/team/app@sha256:" + strings.Repeat("a", 64), true},
		{"demo.azurecr.io/v2/", "demo.azurecr.io/hello", true},
		{"*.azurecr.io", "demo.azurecr.io/hello", true},
		{"*.azurecr.io", "a.demo.azurecr.io/hello", false},
		{"demo.azurecr.io", "demo.azurecr.io:5000/hello", false},
		{"demo.azurecr.io:5000", "demo.azurecr.io:5000/hello", true},
		{"demo.azurecr.io/team", "demo.azurecr.io/team/app", true},
		{"demo.azurecr.io/team", "demo.azurecr.io/other/app", false},
		{"demo.azurecr.io", "other.azurecr.io/hello", false},
		{"docker.io", "nginx", true},
		{"https://index.docker.io/v1/", "nginx:1.27", true},
		{"demo.azurecr.io", "nginx", false},
	} {
		ref, err := parseImage(tc.image)
		if err != nil {
			t.Fatal(err)
		}
		got, err := secretCovers(pullSecret("s", tc.key), ref.Repository)
		if err != nil || got != tc.covers {
			t.Errorf("secret for %q covers %q (%s): %v, %v; want %v", tc.key, tc.image, ref.Repository, got, err, tc.covers)
		}
	}
}

func TestScopeAllowsPull(t *testing.T) {
	g := NewWithT(t)
	g.Expect(scopeAllowsPull("repository:hello:pull", "hello")).To(BeTrue())
	g.Expect(scopeAllowsPull("repository:a:pull repository:team/app:push,pull", "team/app")).To(BeTrue())
	g.Expect(scopeAllowsPull("repository:hello:push", "hello")).To(BeFalse())
	g.Expect(scopeAllowsPull("repository:helo:pull", "hello")).To(BeFalse())
	g.Expect(scopeAllowsPull("repository:hello:pull", "team/hello")).To(BeFalse())
	g.Expect(scopeAllowsPull("", "anything")).To(BeTrue(), "v1beta1 without a scope gets a registry-wide token")
}

var (
	now     = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	created = now.Add(-time.Hour)
)

func readyCond(status metav1.ConditionStatus, reason string) *metav1.Condition {
	return &metav1.Condition{Type: acrv1beta2.ConditionReady, Status: status, Reason: reason}
}

// healthyFacts is a pod whose one image is covered by its binding's secret.
func healthyFacts() podFacts {
	secret := pullSecret("acr-pull-app", "demo.azurecr.io")
	expiry := now.Add(2 * time.Hour)
	return podFacts{Namespace: "ns", Name: "web", Found: true, Created: created, ServiceAccount: "app", ServiceAccountFound: true,
		PodSecrets: []string{"acr-pull-app"}, ServiceAccountSecrets: []string{"acr-pull-app"},
		Secrets: map[string]*corev1.Secret{"acr-pull-app": secret}, Images: []string{"demo.azurecr.io/hello:v1"},
		Bindings: []bindingFacts{{API: apiV1beta2, Namespace: "ns", Name: "app", Server: "demo.azurecr.io", Scope: "repository:hello:pull",
			ServiceAccount: "app", Ready: readyCond(metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted), Expiry: &expiry, Secret: secret}}}
}

// Each situation gets its own reason, checked in the order that makes the one action the right one.
func TestDiagnoseDecisions(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*podFacts)
		reason string
		action string
	}{
		"healthy":            {func(*podFacts) {}, ReasonHealthy, "none for the pull secrets"},
		"not found":          {func(f *podFacts) { f.Found = false }, ReasonPodNotFound, "kubectl get pods -n ns"},
		"secrets unreadable": {func(f *podFacts) { f.SecretsUnreadable = true }, ReasonSecretsUnreadable, "kubectl auth can-i get secrets -n ns"},
		"invalid image":      {func(f *podFacts) { f.Images = []string{"Demo.azurecr.io/UPPER"} }, ReasonInvalidImage, "fix the image reference"},
		"race":               {func(f *podFacts) { f.PodSecrets = nil }, ReasonPodCreatedBeforeSecret, "kubectl delete pod web -n ns"},
		"race with older secrets copied": {func(f *podFacts) {
			f.ServiceAccountSecrets = []string{"older", "acr-pull-app"}
			f.PodSecrets = []string{"older"}
		}, ReasonPodCreatedBeforeSecret, "kubectl delete pod web -n ns"},
		"own pull secrets": {func(f *podFacts) { f.PodSecrets = []string{"mine"} }, ReasonPodListsOwnSecrets, "add acr-pull-app to the imagePullSecrets"},
		"binding not ready": {func(f *podFacts) {
			f.Bindings[0].Ready = readyCond(metav1.ConditionFalse, acrv1beta2.ReasonIdentityNotFederated)
		}, ReasonBindingNotReady, "add a federated credential for subject system:serviceaccount:ns:"},
		"binding not reported": {func(f *podFacts) { f.Bindings[0].Ready = nil }, ReasonBindingNotReady, "kubectl describe " + apiV1beta2 + " app -n ns"},
		"uncovered, binding not ready": {func(f *podFacts) {
			f.PodSecrets, f.ServiceAccountSecrets, f.Bindings[0].Secret = nil, nil, nil
			f.Bindings[0].Ready = readyCond(metav1.ConditionFalse, acrv1beta2.ReasonRegistryDenied)
		}, ReasonBindingNotReady, "AcrPull role"},
		"secret not attached": {func(f *podFacts) { f.PodSecrets, f.ServiceAccountSecrets = nil, nil }, ReasonSecretNotAttached, "controller's log"},
		"token expired": {func(f *podFacts) {
			past := now.Add(-time.Minute)
			f.Bindings[0].Expiry = &past
		}, ReasonTokenExpired, "controller is running"},
		"not verified": {func(f *podFacts) {
			f.Bindings[0].Verified = &metav1.Condition{Type: conditionVerified, Status: metav1.ConditionFalse, Reason: "ScopeDenied"}
		}, ReasonNotVerified, "give the identity pull on the repositories"},
		"verified true is fine": {func(f *podFacts) {
			f.Bindings[0].Verified = &metav1.Condition{Type: conditionVerified, Status: metav1.ConditionTrue, Reason: acrv1beta2.ReasonPullVerified}
		}, ReasonHealthy, "none"},
		"scope misses repository": {func(f *podFacts) { f.Images = []string{"demo.azurecr.io/private:v1"} },
			ReasonScopeMissesRepository, "add repository:private:pull to the scope of binding app"},
		"a second, healthy credential is enough": {func(f *podFacts) {
			f.Secrets["team"] = pullSecret("team", "demo.azurecr.io")
			f.PodSecrets = append(f.PodSecrets, "team")
			f.Bindings[0].Ready = readyCond(metav1.ConditionFalse, acrv1beta2.ReasonAzureUnavailable)
		}, ReasonHealthy, "none"},
		"no binding": {func(f *podFacts) {
			f.PodSecrets, f.ServiceAccountSecrets, f.Bindings = nil, nil, nil
		}, ReasonNoBinding, "create an AcrPullBinding in ns with server demo.azurecr.io and serviceAccountName app"},
		"account deleted": {func(f *podFacts) {
			f.PodSecrets, f.ServiceAccountSecrets, f.Bindings, f.ServiceAccountFound = nil, nil, nil, false
		}, ReasonServiceAccountNotFound, "create service account app in ns"},
		"registry not covered": {func(f *podFacts) { f.Images = []string{"other.azurecr.io/hello"} },
			ReasonRegistryNotCovered, "with server other.azurecr.io and serviceAccountName app"},
		// A public image listed first does not hide a broken binding behind it.
		"binding problem before an unserved image": {func(f *podFacts) {
			f.Images = []string{"busybox", "demo.azurecr.io/hello:v1"}
			f.Bindings[0].Ready = readyCond(metav1.ConditionFalse, acrv1beta2.ReasonRegistryDenied)
		}, ReasonBindingNotReady, "AcrPull role"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			f := healthyFacts()
			tc.change(&f)
			d := diagnose(f, now)
			g.Expect(d.Reason).To(Equal(tc.reason), d.String())
			g.Expect(d.Action).To(ContainSubstring(tc.action), d.String())
			g.Expect(d.String()).NotTo(ContainSubstring(`"password"`))
		})
	}
}

func TestStatusOrder(t *testing.T) {
	g := NewWithT(t)
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	bindings := []bindingFacts{
		{Namespace: "a", Name: "late", Ready: readyCond(metav1.ConditionTrue, "TokenMinted"), Expiry: at(3 * time.Hour)},
		{Namespace: "a", Name: "none", Ready: readyCond(metav1.ConditionTrue, "TokenMinted")},
		{Namespace: "b", Name: "denied", Ready: readyCond(metav1.ConditionFalse, "RegistryDenied"), Expiry: at(time.Hour)},
		{Namespace: "a", Name: "soon", Ready: readyCond(metav1.ConditionTrue, "TokenMinted"), Expiry: at(time.Minute)},
		{Namespace: "a", Name: "new"},
	}
	sortForStatus(bindings)
	var names []string
	for _, b := range bindings {
		names = append(names, b.Name)
	}
	g.Expect(names).To(Equal([]string{"new", "denied", "soon", "late", "none"}))
}
