/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

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
