/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
)

// A controller killed between writing a binding's secret and attaching it, while the binding went away without its
// finalizer (see cleanUpVanished), leaves a secret that no binding and no service account names. The next controller
// to start finds it in its first list of secrets and deletes it.
func TestSecretOfABindingThatVanishedWhileDownIsDeletedAtStart(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	orphan := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "acr-pull-gone",
			Labels: map[string]string{acrpullbinding.BindingLabel: "gone"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "acrpull.microsoft.com/v1beta2", Kind: "AcrPullBinding", Name: "gone",
				UID: types.UID("4b1c7a44-0000-4000-8000-000000000000"), Controller: ptrTo(true),
			}},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
	}
	create(t, orphan)

	// A controller that starts now; its bindings selector matches none of the suite's, so only its start-up list of
	// secrets can bring it to this one.
	stop := startShardController(t, env.Config, labels.SelectorFromSet(labels.Set{"acrpull.test/shard": "vanished"}))
	defer stop()
	g.Eventually(func() bool {
		err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: orphan.Name}, &corev1.Secret{})
		return apierrors.IsNotFound(err)
	}).WithTimeout(30*time.Second).Should(BeTrue(), "the orphaned secret is deleted by the controller that starts after")
}

// A new binding becomes usable one write sooner: its first pass creates and attaches its secret and writes its
// status, and a follow-up pass adds the finalizer.
func TestNewBindingIsUsableBeforeItsFinalizer(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: k8s.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	w, err := wc.Watch(ctx, &acrv1beta2.AcrPullBindingList{}, client.InNamespace(ns))
	g.Expect(err).NotTo(HaveOccurred())
	defer w.Stop()
	b := managedIdentityBinding(ns, "usable-first", "default", "repository:alice:pull")
	create(t, b)

	var usableWithout, finalized bool
	timeout := time.After(30 * time.Second)
	for !finalized {
		select {
		case e := <-w.ResultChan():
			got, ok := e.Object.(*acrv1beta2.AcrPullBinding)
			if !ok {
				continue
			}
			has := slices.Contains(got.Finalizers, acrpullbinding.Finalizer)
			if got.Status.TokenExpirationTime != nil && !has {
				usableWithout = true
			}
			finalized = has
		case <-timeout:
			t.Fatal("the binding never got its finalizer")
		}
	}
	g.Expect(usableWithout).To(BeTrue(), "the status named a token before the finalizer was added")
	g.Expect(pullSecretNames(g, ns, "default")).To(ContainElement("acr-pull-usable-first"))
}

// A binding seen deleted without its finalizer (a new one, before its follow-up pass) whose secret the garbage
// collector deleted first (this suite's apiserver runs no garbage collector: the test deletes the secret itself)
// leaves a name no secret and no binding has. The controller unreferences it, as reconcileDelete would have.
func TestReferenceOfABindingGoneAfterItsSecretIsRemoved(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "", "theirs")
	b := managedIdentityBinding(ns, "collected", "default", "repository:alice:pull")
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "default") }).
		WithTimeout(30 * time.Second).Should(Equal([]string{"theirs", "acr-pull-collected"}))

	// The controller sees the binding go without its finalizer (its finalizer removed, which wakes nothing, then
	// paused: the controller's cache drops it), then its secret is deleted, then the binding.
	edit(t, b, func() { b.Finalizers = nil })
	edit(t, b, func() { b.Labels = map[string]string{pausedLabel: "true"} })
	time.Sleep(time.Second)
	g.Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acr-pull-collected"}})).To(Succeed())
	g.Expect(k8s.Delete(ctx, b)).To(Succeed())

	// The next change of the account finds the name no binding claims.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
	edit(t, sa, func() { sa.Annotations = map[string]string{"touched": "yes"} })
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "default") }).
		WithTimeout(30 * time.Second).Should(Equal([]string{"theirs"}))
}
