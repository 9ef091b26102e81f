/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// Another client keeps rewriting the same service account's imagePullSecrets while bindings that target it are
// created and deleted: none of its entries is ever lost, ours end up listed exactly once each, and a binding deleted
// right after creation leaves neither a reference nor a secret behind.
//
// Deleting right after creation races the finalizer: the apiserver can delete a binding whose finalizer patch it
// has just accepted, and the pass in flight then creates and attaches the secret for a binding that no longer exists.
// This failed about one run in two until the controller learned to clean up after bindings that vanish that way.
func TestConcurrentWritersOfAServiceAccountKeepTheirEntries(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "shared", "")
	key := client.ObjectKey{Namespace: ns, Name: "shared"}

	// The other writer: adds its own entries one by one and drops its older ones, like a rotating pull secret.
	stop := make(chan struct{})
	var theirs []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("theirs-%d", i)
			err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
				sa := &corev1.ServiceAccount{}
				if err := k8s.Get(ctx, key, sa); err != nil {
					return err
				}
				sa.ImagePullSecrets = slices.DeleteFunc(sa.ImagePullSecrets, func(r corev1.LocalObjectReference) bool {
					return r.Name == fmt.Sprintf("theirs-%d", i-3)
				})
				sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
				return k8s.Update(ctx, sa)
			})
			if err == nil {
				theirs = append(slices.DeleteFunc(theirs, func(s string) bool { return s == fmt.Sprintf("theirs-%d", i-3) }), name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var ours, gone []string
	for i := range 12 {
		b := managedIdentityBinding(ns, fmt.Sprintf("busy-%d", i), "shared", "repository:alice:pull")
		create(t, b)
		if i%3 == 2 {
			g.Expect(k8s.Delete(ctx, b)).To(Succeed())
			gone = append(gone, "acr-pull-"+b.Name)
		} else {
			ours = append(ours, "acr-pull-"+b.Name)
		}
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	want := append(slices.Clone(theirs), ours...)
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "shared") }).
		WithTimeout(30 * time.Second).Should(ConsistOf(want))
	g.Eventually(func(g Gomega) {
		secrets := &corev1.SecretList{}
		g.Expect(k8s.List(ctx, secrets, client.InNamespace(ns))).To(Succeed())
		bindings := &acrv1beta2.AcrPullBindingList{}
		g.Expect(k8s.List(ctx, bindings, client.InNamespace(ns))).To(Succeed())
		var names []string
		for _, s := range secrets.Items {
			names = append(names, s.Name)
		}
		for _, b := range bindings.Items {
			names = append(names, "acr-pull-"+b.Name)
		}
		g.Expect(names).NotTo(ContainElement(BeElementOf(gone)), "no binding stuck deleting, no secret outlives its binding")
	}).WithTimeout(10 * time.Second).Should(Succeed())
}
