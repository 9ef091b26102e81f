/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/scheme"
)

// The policy messages the tests expect, as the chart words them.
const (
	msgAudience      = "acrpull may only request service-account tokens with exactly one audience, " + audience
	msgDelete        = "acrpull may only delete secrets owned by an AcrPullBinding"
	msgType          = "acrpull may only write secrets of type kubernetes.io/dockerconfigjson"
	msgOwner         = "acrpull may only write secrets with exactly one owner reference, to an AcrPullBinding"
	msgName          = "acrpull may only write secrets named acr-pull-* or *-msi-acrpull-secret"
	msgLabel         = "acrpull may only write secrets labelled acr.microsoft.com/binding"
	msgOwnerChange   = "acrpull may not change a secret's owner references"
	msgLabelChange   = "acrpull may not change a secret's labels"
	msgAddName       = "acrpull may only add image pull secrets named acr-pull-* or *-msi-acrpull-secret"
	msgRemoveName    = "acrpull may only remove image pull secrets named acr-pull-* or *-msi-acrpull-secret"
	msgSASecrets     = "acrpull may not change a service account's secrets"
	msgSAAutomount   = "acrpull may not change a service account's automountServiceAccountToken"
	msgSAMetadata    = "acrpull may not change a service account's labels, annotations, owner references or finalizers"
	audience         = "api://AzureCRTokenExchange"
	bindingLabel     = "acr.microsoft.com/binding"
	activationWindow = 30 * time.Second
)

// policyWorld is the cluster state the policy tests share: the chart installed, a client holding the controller's
// own service-account token, and bindings to own secrets.
type policyWorld struct {
	// release, ns and apps name the install, the controller's namespace and the applications' namespace; fresh
	// names on every run, so the tests also pass with -count=N on one apiserver.
	release, ns, apps string
	admin, ctl        client.Client
	v1beta2           *acrv1beta2.AcrPullBinding
	v1beta1           *acrv1beta1.AcrPullBinding
	other             *acrv1beta2.AcrPullBinding
}

var probeCount atomic.Int64

func setUpPolicyWorld(t *testing.T) *policyWorld {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	w := &policyWorld{admin: env.Client, release: fresh("policy-test"), ns: fresh("acrpull-policy"), apps: fresh("apps")}

	// Install the chart as rendered, except the CRDs (the test apiserver already has controller-gen's).
	out, err := template(w.release, "--set", "namespace="+w.ns, "--set", "createNamespace=true", "--set", "crds.install=false")
	g.Expect(err).NotTo(HaveOccurred())
	for _, obj := range mustDecode(t, out) {
		g.Expect(w.admin.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}

	// The controller's client authenticates with a token of its own service account, as in the pod.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "acrpull"}}
	tr := &authenticationv1.TokenRequest{}
	g.Expect(w.admin.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	w.ctl, err = client.New(cfg, client.Options{Scheme: scheme.New()})
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(w.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.apps}})).To(Succeed())
	mi := acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: "00000000-0000-0000-0000-000000000001"}}
	acr := acrv1beta2.AcrConfiguration{Server: "example.azurecr.io", Scope: "repository:app:pull", Environment: acrv1beta2.AzureEnvironmentPublicCloud}
	w.v1beta2 = &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "web"},
		Spec: acrv1beta2.AcrPullBindingSpec{ACR: acr, Auth: mi, ServiceAccountName: "app"}}
	w.other = &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "other"},
		Spec: acrv1beta2.AcrPullBindingSpec{ACR: acr, Auth: mi, ServiceAccountName: "app"}}
	w.v1beta1 = &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "legacy"},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: "example.azurecr.io", ManagedIdentityClientID: "00000000-0000-0000-0000-000000000001"}}
	for _, b := range []client.Object{w.v1beta2, w.other, w.v1beta1} {
		g.Expect(w.admin.Create(ctx, b)).To(Succeed())
	}

	// RBAC and the policies take effect a moment after they are created. Each probe below is a request a policy
	// denies; its objects are fresh every time, so a probe that slips through before activation changes nothing.
	g.Eventually(func() error {
		return w.ctl.List(ctx, &corev1.SecretList{}, client.InNamespace(w.apps))
	}).WithTimeout(activationWindow).Should(Succeed(), "the chart's ClusterRole should let the controller list secrets")
	g.Eventually(func() error {
		return w.tokenRequest(ctx, "app-probe", "https://kubernetes.default.svc")
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgAudience)))
	g.Eventually(func() error {
		s := w.secret(fmt.Sprintf("acr-pull-probe-%d", probeCount.Add(1)), w.v1beta2)
		s.Type = corev1.SecretTypeOpaque
		return w.ctl.Create(ctx, s)
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgType)))
	probe := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "probe"}}
	g.Expect(w.admin.Create(ctx, probe)).To(Succeed())
	g.Eventually(func() error {
		return w.setPullSecrets(ctx, w.ctl, "probe", fmt.Sprintf("unmanaged-%d", probeCount.Add(1)))
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgAddName)))
	return w
}

// secret is a pull secret as the controller writes it: managed name, dockerconfigjson, the binding label, one
// controller owner reference to the binding.
func (w *policyWorld) secret(name string, owner client.Object) *corev1.Secret {
	gvk, _ := w.admin.GroupVersionKindFor(owner)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: w.apps, Name: name, Labels: map[string]string{bindingLabel: owner.GetName()},
			Annotations: map[string]string{"acr.microsoft.com/token.expiry": "2026-01-01T00:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
				Name: owner.GetName(), UID: owner.GetUID(), Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
	}
}

// ensureServiceAccount creates a service account named name in the app namespace (as admin), or fails the test.
func (w *policyWorld) ensureServiceAccount(t *testing.T, name string, pullSecrets ...string) *corev1.ServiceAccount {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: name}}
	for _, n := range pullSecrets {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
	}
	if err := w.admin.Create(context.Background(), sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return sa
}

func (w *policyWorld) tokenRequest(ctx context.Context, saName string, audiences ...string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: saName}}
	if err := w.admin.Get(ctx, client.ObjectKeyFromObject(sa), sa); apierrors.IsNotFound(err) {
		if err := w.admin.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return w.ctl.SubResource("token").Create(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences}})
}

// setPullSecrets rewrites a service account's imagePullSecrets the way the controller does: a merge patch guarded by
// the resourceVersion it read.
func (w *policyWorld) setPullSecrets(ctx context.Context, c client.Client, saName string, names ...string) error {
	return w.editServiceAccount(ctx, c, saName, func(sa *corev1.ServiceAccount) {
		sa.ImagePullSecrets = nil
		for _, n := range names {
			sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
	})
}

func (w *policyWorld) editServiceAccount(ctx context.Context, c client.Client, saName string, edit func(*corev1.ServiceAccount)) error {
	sa := &corev1.ServiceAccount{}
	if err := w.admin.Get(ctx, types.NamespacedName{Namespace: w.apps, Name: saName}, sa); err != nil {
		return err
	}
	base := sa.DeepCopy()
	edit(sa)
	return c.Patch(ctx, sa, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

func pullSecretNames(t *testing.T, c client.Client, namespace, saName string) []string {
	t.Helper()
	sa := &corev1.ServiceAccount{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: saName}, sa); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range sa.ImagePullSecrets {
		names = append(names, r.Name)
	}
	return names
}

// mergePatch sends a JSON merge patch, as the controller does for its secrets.
func mergePatch(ctx context.Context, c client.Client, obj client.Object, patch map[string]any) error {
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	return c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, data))
}

func ptrTo[T any](v T) *T { return &v }

// TestControllerPolicies installs the chart's RBAC and admission policies on a real apiserver and makes requests
// with the controller's own service-account token: what the controller does is allowed, everything else it could
// try with its permissions is denied with the policy's message, and an admin making the same requests is unaffected.
func TestControllerPolicies(t *testing.T) {
	w := setUpPolicyWorld(t)
	ctx := context.Background()

	t.Run("allowed", func(t *testing.T) {
		t.Run("create an owned, labelled dockerconfigjson secret and patch its data", func(t *testing.T) {
			g := NewWithT(t)
			s := w.secret("acr-pull-web", w.v1beta2)
			g.Expect(w.ctl.Create(ctx, s)).To(Succeed())
			// A refresh: labels re-sent unchanged, annotations and data replaced.
			g.Expect(mergePatch(ctx, w.ctl, s, map[string]any{
				"metadata": map[string]any{"labels": map[string]string{bindingLabel: "web"},
					"annotations": map[string]string{"acr.microsoft.com/token.expiry": "2026-02-01T00:00:00Z"}},
				"data": map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"example.azurecr.io":{}}}`)},
			})).To(Succeed())
			g.Expect(s.Annotations).To(HaveKeyWithValue("acr.microsoft.com/token.expiry", "2026-02-01T00:00:00Z"))
		})
		t.Run("create a v1beta1 secret", func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(w.ctl.Create(ctx, w.secret("legacy-msi-acrpull-secret", w.v1beta1))).To(Succeed())
		})
		t.Run("label a legacy secret msi-acrpull wrote without the label", func(t *testing.T) {
			g := NewWithT(t)
			s := w.secret("old-msi-acrpull-secret", w.v1beta1)
			s.Labels = map[string]string{"team": "payments"}
			g.Expect(w.admin.Create(ctx, s)).To(Succeed())
			g.Expect(mergePatch(ctx, w.ctl, s, map[string]any{
				"metadata": map[string]any{"labels": map[string]string{bindingLabel: "legacy"}},
			})).To(Succeed())
			g.Expect(s.Labels).To(Equal(map[string]string{"team": "payments", bindingLabel: "legacy"}))
		})
		t.Run("add, reorder and remove managed names on a service account", func(t *testing.T) {
			g := NewWithT(t)
			w.ensureServiceAccount(t, "app", "registry-creds")
			g.Expect(w.setPullSecrets(ctx, w.ctl, "app", "registry-creds", "acr-pull-web", "legacy-msi-acrpull-secret")).To(Succeed())
			g.Expect(w.setPullSecrets(ctx, w.ctl, "app", "acr-pull-web", "registry-creds", "legacy-msi-acrpull-secret")).To(Succeed())
			g.Expect(w.setPullSecrets(ctx, w.ctl, "app", "registry-creds")).To(Succeed())
			g.Expect(pullSecretNames(t, w.admin, w.apps, "app")).To(Equal([]string{"registry-creds"}))
		})
		t.Run("request a token with the configured audience", func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(w.tokenRequest(ctx, "app", audience)).To(Succeed())
		})
		t.Run("read secret metadata", func(t *testing.T) {
			g := NewWithT(t)
			list := &metav1.PartialObjectMetadataList{}
			list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
			g.Expect(w.ctl.List(ctx, list, client.HasLabels{bindingLabel})).To(Succeed())
			g.Expect(list.Items).NotTo(BeEmpty())
		})
		t.Run("hold the leader-election Lease and record events", func(t *testing.T) {
			g := NewWithT(t)
			lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "aks.azure.com"},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptrTo("replica-a")}}
			g.Expect(w.ctl.Create(ctx, lease)).To(Succeed())
			g.Expect(w.ctl.Get(ctx, client.ObjectKeyFromObject(lease), lease)).To(Succeed())
			lease.Spec.HolderIdentity = ptrTo("replica-b")
			g.Expect(w.ctl.Update(ctx, lease)).To(Succeed())
			g.Expect(w.ctl.Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Namespace: w.ns, Name: "aks.azure.com.acrpull-test"},
				InvolvedObject: corev1.ObjectReference{Kind: "Lease", Namespace: w.ns, Name: "aks.azure.com"},
				Reason:         "LeaderElection", Message: "replica-b became leader", Type: corev1.EventTypeNormal,
			})).To(Succeed())
			g.Expect(w.ctl.Create(ctx, &eventsv1.Event{
				ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "web.acrpull-test"},
				EventTime:  metav1.NowMicro(), ReportingController: "acrpull", ReportingInstance: "acrpull-replica-b",
				Action: "Mint", Reason: "MintFailed", Type: corev1.EventTypeWarning, Note: "example",
				Regarding: corev1.ObjectReference{APIVersion: "acrpull.microsoft.com/v1beta2", Kind: "AcrPullBinding",
					Namespace: w.apps, Name: w.v1beta2.Name, UID: w.v1beta2.UID},
			})).To(Succeed())
		})
		t.Run("delete an owned secret", func(t *testing.T) {
			g := NewWithT(t)
			s := w.secret("acr-pull-doomed", w.v1beta2)
			g.Expect(w.ctl.Create(ctx, s)).To(Succeed())
			g.Expect(w.ctl.Delete(ctx, s, client.Preconditions{UID: &s.UID})).To(Succeed())
			legacy := w.secret("doomed-msi-acrpull-secret", w.v1beta1)
			g.Expect(w.ctl.Create(ctx, legacy)).To(Succeed())
			g.Expect(w.ctl.Delete(ctx, legacy)).To(Succeed())
		})
	})

	t.Run("denied token requests", func(t *testing.T) {
		for name, audiences := range map[string][]string{
			"the apiserver's audience":                 {"https://kubernetes.default.svc"},
			"another audience":                         {"api://SomethingElse"},
			"two audiences, one of them the right one": {audience, "https://kubernetes.default.svc"},
			"no audience (the apiserver's default)":    nil,
		} {
			t.Run(name, func(t *testing.T) {
				g := NewWithT(t)
				g.Expect(w.tokenRequest(ctx, "app", audiences...)).To(MatchError(ContainSubstring(msgAudience)))
			})
		}
	})

	t.Run("denied secret writes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			mut  func(*corev1.Secret)
			want string
		}{
			{"Opaque", func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }, msgType},
			{"service-account token", func(s *corev1.Secret) {
				s.Type = corev1.SecretTypeServiceAccountToken
				s.Annotations = map[string]string{corev1.ServiceAccountNameKey: "app"}
				s.Data = nil
			}, msgType},
			{"unowned", func(s *corev1.Secret) { s.OwnerReferences = nil }, msgOwner},
			{"owned by a Deployment", func(s *corev1.Secret) {
				s.OwnerReferences[0].APIVersion, s.OwnerReferences[0].Kind = "apps/v1", "Deployment"
			}, msgOwner},
			{"owned by a look-alike group", func(s *corev1.Secret) {
				s.OwnerReferences[0].APIVersion = "acrpull.microsoft.com.evil.example/v1beta2"
			}, msgOwner},
			{"owned by two bindings", func(s *corev1.Secret) {
				s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{APIVersion: "acrpull.microsoft.com/v1beta2",
					Kind: "AcrPullBinding", Name: w.other.Name, UID: w.other.UID})
			}, msgOwner},
			{"an unmanaged name", func(s *corev1.Secret) { s.Name = "registry-creds-2" }, msgName},
			{"no binding label", func(s *corev1.Secret) { s.Labels = map[string]string{"app": "web"} }, msgLabel},
			{"no labels at all (v1beta1 name)", func(s *corev1.Secret) {
				s.Name, s.Labels = "new-msi-acrpull-secret", nil
			}, msgLabel},
		} {
			t.Run("create "+tc.name, func(t *testing.T) {
				g := NewWithT(t)
				s := w.secret("acr-pull-denied", w.v1beta2)
				tc.mut(s)
				err := w.ctl.Create(ctx, s)
				g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
				g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
			})
		}

		s := w.secret("acr-pull-immutable", w.v1beta2)
		NewWithT(t).Expect(w.ctl.Create(ctx, s)).To(Succeed())
		for _, tc := range []struct {
			name  string
			patch map[string]any
			want  string
		}{
			{"change the owner", map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{{
				APIVersion: "acrpull.microsoft.com/v1beta2", Kind: "AcrPullBinding", Name: w.other.Name, UID: w.other.UID}}}}, msgOwnerChange},
			{"drop the owner", map[string]any{"metadata": map[string]any{"ownerReferences": nil}}, msgOwner},
			{"add a second owner", map[string]any{"metadata": map[string]any{"ownerReferences": append(s.OwnerReferences,
				metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "1"})}}, msgOwner},
			{"change the binding label", map[string]any{"metadata": map[string]any{"labels": map[string]any{bindingLabel: "other"}}}, msgLabelChange},
			{"add a label", map[string]any{"metadata": map[string]any{"labels": map[string]any{"extra": "x"}}}, msgLabelChange},
			{"remove the binding label", map[string]any{"metadata": map[string]any{"labels": map[string]any{bindingLabel: nil}}}, msgLabel},
		} {
			t.Run(tc.name, func(t *testing.T) {
				g := NewWithT(t)
				err := mergePatch(ctx, w.ctl, s.DeepCopy(), tc.patch)
				g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
			})
		}
		t.Run("change the type", func(t *testing.T) {
			// The apiserver's own validation (the type is immutable) runs before admission policies and answers
			// first; the policy's type rules stand behind it.
			g := NewWithT(t)
			err := mergePatch(ctx, w.ctl, s.DeepCopy(), map[string]any{"type": "Opaque"})
			g.Expect(err).To(MatchError(Or(ContainSubstring("field is immutable"), ContainSubstring("acrpull may not change a secret's type"))))
		})
		t.Run("a legacy secret may gain the label, nothing else", func(t *testing.T) {
			g := NewWithT(t)
			legacy := w.secret("unlabelled-msi-acrpull-secret", w.v1beta1)
			legacy.Labels = map[string]string{"team": "payments"}
			g.Expect(w.admin.Create(ctx, legacy)).To(Succeed())
			g.Expect(mergePatch(ctx, w.ctl, legacy.DeepCopy(), map[string]any{"metadata": map[string]any{
				"labels": map[string]any{bindingLabel: "legacy", "team": nil}}})).To(MatchError(ContainSubstring(msgLabelChange)))
			g.Expect(mergePatch(ctx, w.ctl, legacy.DeepCopy(), map[string]any{"metadata": map[string]any{
				"labels": map[string]any{bindingLabel: "legacy", "extra": "x"}}})).To(MatchError(ContainSubstring(msgLabelChange)))
		})
		t.Run("adopt a secret the controller did not write", func(t *testing.T) {
			g := NewWithT(t)
			foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "acr-pull-foreign"},
				Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{}`)}}
			g.Expect(w.admin.Create(ctx, foreign)).To(Succeed())
			owned := w.secret("acr-pull-foreign", w.v1beta2)
			g.Expect(mergePatch(ctx, w.ctl, foreign.DeepCopy(), map[string]any{"metadata": map[string]any{
				"labels": owned.Labels, "ownerReferences": owned.OwnerReferences}})).To(MatchError(ContainSubstring(msgOwnerChange)))
		})
	})

	t.Run("denied secret deletes", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			secret *corev1.Secret
		}{
			{"an unowned secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-config"},
				Type: corev1.SecretTypeOpaque, StringData: map[string]string{"k": "v"}}},
			{"an unowned pull secret with a managed name", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "acr-pull-handmade",
				Labels: map[string]string{bindingLabel: "web"}}, Type: corev1.SecretTypeDockerConfigJson,
				Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{}`)}}},
			{"a secret owned by something else", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "owned-by-configmap",
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "1"}}},
				Type: corev1.SecretTypeOpaque}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				g := NewWithT(t)
				tc.secret.Namespace = w.apps
				g.Expect(w.admin.Create(ctx, tc.secret)).To(Succeed())
				err := w.ctl.Delete(ctx, tc.secret)
				g.Expect(err).To(MatchError(ContainSubstring(msgDelete)))
				g.Expect(w.admin.Get(ctx, client.ObjectKeyFromObject(tc.secret), &corev1.Secret{})).To(Succeed(), "still there")
			})
		}
	})

	t.Run("denied service-account edits", func(t *testing.T) {
		for i, tc := range []struct {
			name string
			edit func(*corev1.ServiceAccount)
			want string
		}{
			{"add an unmanaged pull secret", func(sa *corev1.ServiceAccount) {
				sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: "attacker-creds"})
			}, msgAddName + " to a service account, not attacker-creds"},
			{"add an unmanaged pull secret beside a managed one", func(sa *corev1.ServiceAccount) {
				sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: "acr-pull-web"},
					corev1.LocalObjectReference{Name: "acr-pull"})
			}, msgAddName},
			{"remove an unmanaged pull secret", func(sa *corev1.ServiceAccount) { sa.ImagePullSecrets = nil }, msgRemoveName},
			{"replace an unmanaged pull secret", func(sa *corev1.ServiceAccount) {
				sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "acr-pull-web"}}
			}, msgRemoveName},
			{"add to .secrets", func(sa *corev1.ServiceAccount) {
				sa.Secrets = append(sa.Secrets, corev1.ObjectReference{Name: "acr-pull-web"})
			}, msgSASecrets},
			{"set automountServiceAccountToken", func(sa *corev1.ServiceAccount) { sa.AutomountServiceAccountToken = ptrTo(false) }, msgSAAutomount},
			{"add a label", func(sa *corev1.ServiceAccount) { sa.Labels = map[string]string{"x": "y"} }, msgSAMetadata},
			{"add an annotation", func(sa *corev1.ServiceAccount) {
				sa.Annotations = map[string]string{"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000002"}
			}, msgSAMetadata},
		} {
			t.Run(tc.name, func(t *testing.T) {
				g := NewWithT(t)
				name := fmt.Sprintf("edit-%d", i)
				w.ensureServiceAccount(t, name, "registry-creds")
				g.Expect(w.editServiceAccount(ctx, w.ctl, name, tc.edit)).To(MatchError(ContainSubstring(tc.want)))
				g.Expect(pullSecretNames(t, w.admin, w.apps, name)).To(Equal([]string{"registry-creds"}))
			})
		}
	})

	// What the ClusterRole leaves out, the apiserver refuses before any policy runs.
	t.Run("denied by RBAC", func(t *testing.T) {
		owned := w.secret("acr-pull-rbac", w.v1beta2)
		NewWithT(t).Expect(w.ctl.Create(ctx, owned)).To(Succeed())
		for name, call := range map[string]func() error{
			"update (PUT) a secret": func() error { return w.ctl.Update(ctx, owned.DeepCopy()) },
			"delete all secrets": func() error {
				return w.ctl.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(w.apps))
			},
			"read a ConfigMap": func() error {
				return w.ctl.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(w.ns))
			},
			"create a ConfigMap": func() error {
				return w.ctl.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "admission-policies-controller-config"}})
			},
			"create a service account": func() error {
				return w.ctl.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "new"}})
			},
			"delete a service account": func() error {
				return w.ctl.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "app"}})
			},
			"update (PUT) a service account": func() error {
				sa := &corev1.ServiceAccount{}
				if err := w.admin.Get(ctx, types.NamespacedName{Namespace: w.apps, Name: "app"}, sa); err != nil {
					return err
				}
				return w.ctl.Update(ctx, sa)
			},
			"create a binding": func() error {
				b := w.v1beta2.DeepCopy()
				b.ObjectMeta = metav1.ObjectMeta{Namespace: w.apps, Name: "made-by-controller"}
				return w.ctl.Create(ctx, b)
			},
			"delete a binding": func() error { return w.ctl.Delete(ctx, w.other.DeepCopy()) },
			"edit the admission policies": func() error {
				u := &unstructured.Unstructured{}
				u.SetAPIVersion("admissionregistration.k8s.io/v1")
				u.SetKind("ValidatingAdmissionPolicyBinding")
				u.SetName(w.release + "-secret-mutation")
				return w.ctl.Delete(ctx, u)
			},
			"create a Lease outside its namespace": func() error {
				return w.ctl.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "aks.azure.com"}})
			},
			"read another Lease in its namespace": func() error {
				return w.ctl.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: "someone-else"}, &coordinationv1.Lease{})
			},
			"read pods": func() error {
				return w.ctl.List(ctx, &corev1.PodList{}, client.InNamespace(w.apps))
			},
		} {
			t.Run(name, func(t *testing.T) {
				g := NewWithT(t)
				err := call()
				g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
				g.Expect(err.Error()).NotTo(ContainSubstring("ValidatingAdmissionPolicy"), "RBAC, not a policy, should refuse it")
			})
		}
	})

	// The policies match only the controller: the same requests by an admin go through.
	t.Run("admin unaffected", func(t *testing.T) {
		g := NewWithT(t)
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "app"}}
		g.Expect(w.admin.SubResource("token").Create(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"https://kubernetes.default.svc", "api://SomethingElse"}}})).To(Succeed())
		opaque := w.secret("admin-opaque", w.v1beta2)
		opaque.Type, opaque.OwnerReferences, opaque.Labels = corev1.SecretTypeOpaque, nil, nil
		g.Expect(w.admin.Create(ctx, opaque)).To(Succeed())
		g.Expect(mergePatch(ctx, w.admin, opaque, map[string]any{"metadata": map[string]any{"labels": map[string]string{"x": "y"}}})).To(Succeed())
		g.Expect(w.admin.Delete(ctx, opaque)).To(Succeed())
		owned := w.secret("acr-pull-admin", w.v1beta2)
		g.Expect(w.admin.Create(ctx, owned)).To(Succeed())
		g.Expect(mergePatch(ctx, w.admin, owned, map[string]any{"metadata": map[string]any{
			"labels": map[string]any{bindingLabel: "changed"}, "ownerReferences": nil}})).To(Succeed())
		g.Expect(w.setPullSecrets(ctx, w.admin, "app", "registry-creds", "admin-creds")).To(Succeed())
		g.Expect(w.setPullSecrets(ctx, w.admin, "app", "registry-creds")).To(Succeed())
		g.Expect(w.editServiceAccount(ctx, w.admin, "app", func(sa *corev1.ServiceAccount) {
			sa.AutomountServiceAccountToken = ptrTo(false)
			sa.Labels = map[string]string{"x": "y"}
		})).To(Succeed())
	})
}
