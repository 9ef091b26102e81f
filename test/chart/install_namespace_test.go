/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Installing without --create-namespace, with the real helm against the real apiserver:
//   - msi-acrpull's README command (a release in the context's namespace, the chart's `namespace` value naming where
//     the controller runs) renders that Namespace when it does not exist, as msi-acrpull's chart did, and an upgrade
//     keeps it;
//   - a `namespace` that exists and is not the release's is used, never adopted;
//   - `-n <missing>` alone cannot work (helm stores the release in that namespace before it creates any object, and a
//     chart cannot tell at render time whether --create-namespace was given): helm refuses with its own message naming
//     the namespace, and nothing is left behind.
func TestHelmInstallWithoutCreateNamespace(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	kube := []string{"--kubeconfig", env.KubeconfigPath, "--set", "crds.install=false"}

	// msi-acrpull's way: release in "default", controller in a namespace of its own that does not exist yet.
	release, ns := fresh("msi-style"), fresh("msi-style-system")
	_, err := helm(append([]string{"install", release, chartDir, "--namespace", "default", "--set", "namespace=" + ns}, kube...)...)
	g.Expect(err).NotTo(HaveOccurred())
	created := &corev1.Namespace{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Name: ns}, created)).To(Succeed())
	g.Expect(created.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "acrpull"}, &appsv1.Deployment{})).To(Succeed())
	_, err = helm(append([]string{"upgrade", release, chartDir, "--namespace", "default", "--set", "namespace=" + ns, "--set", "replicas=1"}, kube...)...)
	g.Expect(err).NotTo(HaveOccurred())
	after := &corev1.Namespace{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Name: ns}, after)).To(Succeed())
	g.Expect(after.UID).To(Equal(created.UID))
	g.Expect(after.DeletionTimestamp).To(BeNil(), "the upgrade deleted the Namespace the install created")
	_, err = helm("uninstall", release, "--namespace", "default", "--kubeconfig", env.KubeconfigPath)
	g.Expect(err).NotTo(HaveOccurred())

	// A namespace someone else made: used as it is, not rendered (helm would refuse to adopt it).
	release, ns = fresh("preexisting"), fresh("preexisting-system")
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	_, err = helm(append([]string{"install", release, chartDir, "--namespace", "default", "--set", "namespace=" + ns}, kube...)...)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "acrpull"}, &appsv1.Deployment{})).To(Succeed())
	kept := &corev1.Namespace{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Name: ns}, kept)).To(Succeed())
	g.Expect(kept.Annotations).NotTo(HaveKey("meta.helm.sh/release-name"))
	_, err = helm("uninstall", release, "--namespace", "default", "--kubeconfig", env.KubeconfigPath)
	g.Expect(err).NotTo(HaveOccurred())

	// createNamespace=false renders no Namespace, whatever `namespace` says; true always renders it.
	g.Expect(ofKind(mustTemplate(t, "--set", "namespace=elsewhere", "--set", "createNamespace=false"), "Namespace")).To(BeEmpty())
	g.Expect(ofKind(mustTemplate(t, "--set", "createNamespace=true"), "Namespace")).To(HaveLen(1))

	// -n <missing> without --create-namespace: helm's refusal names the namespace; no object of the release exists.
	release, ns = fresh("no-create"), fresh("no-create-ns")
	_, err = helm(append([]string{"install", release, chartDir, "--namespace", ns}, kube...)...)
	g.Expect(err).To(MatchError(ContainSubstring(`namespaces "` + ns + `" not found`)))
	err = env.Client.Get(ctx, types.NamespacedName{Name: release + "-controller"}, &rbacv1.ClusterRole{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ClusterRole of a failed install: %v", err)
}
