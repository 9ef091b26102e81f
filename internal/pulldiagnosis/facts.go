/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package pulldiagnosis

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// conditionVerified is the condition type a binding carries once the controller has tried its credential against the
// registry. Controllers that do not set it (older acrpull, msi-acrpull) leave it absent, which the plugin tolerates.
const conditionVerified = acrv1beta2.ConditionVerified

// bindingLabel marks the secrets the controller manages (the controller's own constant; the plugin does not link the
// controller).
const bindingLabel = "acr.microsoft.com/binding"

// Names of the two binding APIs, as the answers print them.
const (
	apiV1beta2 = "acrpullbindings.acrpull.microsoft.com"
	apiV1beta1 = "acrpullbindings.msi-acrpull.microsoft.com"
)

// podFacts is everything the diagnosis of one pod reads from the cluster.
type podFacts struct {
	Namespace, Name string
	// Found is false when the pod does not exist; nothing else is then filled.
	Found   bool
	Created time.Time
	// ServiceAccount is the pod's service account; ServiceAccountFound whether it still exists.
	ServiceAccount      string
	ServiceAccountFound bool
	// PodSecrets are the pod's imagePullSecrets: what kubelet will use. ServiceAccountSecrets are the account's
	// today, which the ServiceAccount admission plugin copied into the pod only if the pod was created after they were
	// added and listed none of its own.
	PodSecrets            []string
	ServiceAccountSecrets []string
	// Secrets are the secrets named by either list, by name; missing ones are absent.
	Secrets map[string]*corev1.Secret
	// SecretsUnreadable is set when the caller may not read secrets: coverage is then unknown.
	SecretsUnreadable bool
	Images            []string
	// Bindings are the bindings of both API groups whose target is the pod's service account.
	Bindings []bindingFacts
}

// bindingFacts is one binding of either API group, reduced to what a diagnosis needs.
type bindingFacts struct {
	API, Namespace, Name string
	UID                  types.UID
	// Server is the registry the binding mints for; empty for a v1beta1 binding relying on the controller's default.
	Server, Scope  string
	ServiceAccount string
	Ready          *metav1.Condition
	Verified       *metav1.Condition
	Expiry         *time.Time
	// Secret is the pull secret the binding owns (found by owner reference), nil while there is none.
	Secret *corev1.Secret
}

// readPod gathers the facts about one pod. A missing pod is a fact, not an error; API failures are errors.
func readPod(ctx context.Context, c client.Client, namespace, name string) (podFacts, error) {
	f := podFacts{Namespace: namespace, Name: name, Secrets: map[string]*corev1.Secret{}}
	pod := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return f, nil
		}
		return f, fmt.Errorf("reading pod %s/%s: %w", namespace, name, err)
	}
	f.Found, f.Created = true, pod.CreationTimestamp.Time
	f.ServiceAccount = pod.Spec.ServiceAccountName
	if f.ServiceAccount == "" {
		f.ServiceAccount = "default"
	}
	for _, ref := range pod.Spec.ImagePullSecrets {
		f.PodSecrets = append(f.PodSecrets, ref.Name)
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, ctr := range list {
			f.Images = appendUnique(f.Images, ctr.Image)
		}
	}
	for _, ctr := range pod.Spec.EphemeralContainers {
		f.Images = appendUnique(f.Images, ctr.Image)
	}

	sa := &corev1.ServiceAccount{}
	switch err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: f.ServiceAccount}, sa); {
	case err == nil:
		f.ServiceAccountFound = true
		for _, ref := range sa.ImagePullSecrets {
			f.ServiceAccountSecrets = append(f.ServiceAccountSecrets, ref.Name)
		}
	case !apierrors.IsNotFound(err):
		return f, fmt.Errorf("reading service account %s/%s: %w", namespace, f.ServiceAccount, err)
	}

	bindings, err := readBindings(ctx, c, namespace)
	if err != nil {
		return f, err
	}
	for _, b := range bindings {
		if b.ServiceAccount == f.ServiceAccount {
			f.Bindings = append(f.Bindings, b)
		}
	}
	if err := readSecrets(ctx, c, &f); err != nil {
		return f, err
	}
	return f, nil
}

// readSecrets fills the named secrets and each binding's own secret. Without permission to read secrets the
// diagnosis still answers, saying coverage is unknown.
func readSecrets(ctx context.Context, c client.Client, f *podFacts) error {
	for _, name := range append(append([]string{}, f.PodSecrets...), f.ServiceAccountSecrets...) {
		if _, done := f.Secrets[name]; done {
			continue
		}
		s := &corev1.Secret{}
		switch err := c.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: name}, s); {
		case err == nil:
			f.Secrets[name] = s
		case apierrors.IsForbidden(err):
			f.SecretsUnreadable = true
			return nil
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("reading secret %s/%s: %w", f.Namespace, name, err)
		}
	}
	if len(f.Bindings) == 0 {
		return nil
	}
	managed := &corev1.SecretList{}
	switch err := c.List(ctx, managed, client.InNamespace(f.Namespace), client.HasLabels{bindingLabel}); {
	case apierrors.IsForbidden(err):
		f.SecretsUnreadable = true
		return nil
	case err != nil:
		return fmt.Errorf("listing pull secrets in %s: %w", f.Namespace, err)
	}
	for i := range f.Bindings {
		for j := range managed.Items {
			if ownedBy(&managed.Items[j], f.Bindings[i].UID) {
				f.Bindings[i].Secret = &managed.Items[j]
			}
		}
	}
	return nil
}

func ownedBy(obj metav1.Object, uid types.UID) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == uid {
			return true
		}
	}
	return false
}

// readBindings lists the bindings of both API groups in namespace ("" for all). A group whose CRD is not installed
// has no bindings.
func readBindings(ctx context.Context, c client.Client, namespace string) ([]bindingFacts, error) {
	var out []bindingFacts
	v2 := &acrv1beta2.AcrPullBindingList{}
	if err := c.List(ctx, v2, client.InNamespace(namespace)); err != nil && !notServed(err) {
		return nil, fmt.Errorf("listing %s: %w", apiV1beta2, err)
	}
	for _, b := range v2.Items {
		out = append(out, bindingFacts{API: apiV1beta2, Namespace: b.Namespace, Name: b.Name, UID: b.UID,
			Server: b.Spec.ACR.Server, Scope: b.Spec.ACR.Scope, ServiceAccount: b.Spec.ServiceAccountName,
			Ready:    meta.FindStatusCondition(b.Status.Conditions, acrv1beta2.ConditionReady),
			Verified: meta.FindStatusCondition(b.Status.Conditions, conditionVerified),
			Expiry:   timeOf(b.Status.TokenExpirationTime)})
	}
	v1 := &acrv1beta1.AcrPullBindingList{}
	if err := c.List(ctx, v1, client.InNamespace(namespace)); err != nil && !notServed(err) {
		return nil, fmt.Errorf("listing %s: %w", apiV1beta1, err)
	}
	for _, b := range v1.Items {
		sa := b.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		out = append(out, bindingFacts{API: apiV1beta1, Namespace: b.Namespace, Name: b.Name, UID: b.UID,
			Server: b.Spec.AcrServer, Scope: b.Spec.Scope, ServiceAccount: sa,
			Ready:    meta.FindStatusCondition(b.Status.Conditions, acrv1beta2.ConditionReady),
			Verified: meta.FindStatusCondition(b.Status.Conditions, conditionVerified),
			Expiry:   timeOf(b.Status.TokenExpirationTime)})
	}
	return out, nil
}

// notServed is true when the apiserver does not know the binding kind: its CRD is not installed.
func notServed(err error) bool {
	return meta.IsNoMatchError(err) || apierrors.IsNotFound(err)
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}

func appendUnique(list []string, s string) []string {
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
}
