/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const msgNetRaw = "pods must drop the NET_RAW capability (or ALL), not add it back and not be privileged"

// The NET_RAW policy is rendered only with the node agent and validation actions, and never binds the chart's own
// namespace, where the agent adds NET_RAW.
func TestNetRawPolicyRendersOnlyWhenAsked(t *testing.T) {
	g := NewWithT(t)
	g.Expect(find(mustTemplate(t, "--set", "podIdentity.enabled=true"), "ValidatingAdmissionPolicyBinding",
		releaseName+"-pod-net-raw")).To(BeNil(), "off by default")
	g.Expect(find(mustTemplate(t, "--set", "podIdentity.netRawPolicy.validationActions={Deny}"), "ValidatingAdmissionPolicy",
		releaseName+"-pod-net-raw")).To(BeNil(), "only with the node agent")

	objs := mustTemplate(t, "--set", "podIdentity.enabled=true", "--set", "podIdentity.netRawPolicy.validationActions={Warn,Audit}",
		"--set", "podIdentity.netRawPolicy.exemptNamespaces={kube-system,calico-system}")
	binding := find(objs, "ValidatingAdmissionPolicyBinding", releaseName+"-pod-net-raw")
	g.Expect(binding).NotTo(BeNil())
	actions, _, _ := unstructured.NestedStringSlice(binding.Object, "spec", "validationActions")
	g.Expect(actions).To(Equal([]string{"Warn", "Audit"}))
	exprs, _, _ := unstructured.NestedSlice(binding.Object, "spec", "matchResources", "namespaceSelector", "matchExpressions")
	g.Expect(exprs).To(ConsistOf(map[string]any{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
		"values": []any{chartNamespace, "kube-system", "calico-system"}}))
}

// On a real apiserver, with Deny: a pod is admitted only if every container, init and ephemeral ones included, drops
// NET_RAW (or ALL), adds neither back and is not privileged; refusals name the containers; exempt namespaces are left
// alone. Capability names are judged as containerd and CRI-O read them (upper-cased, CAP_ prefixed), so no spelling
// adds NET_RAW past the policy and no spelling that drops nothing counts as dropping it.
func TestNetRawPolicyRefusesPodsThatKeepNetRaw(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, apps, exempt := fresh("netraw-test"), fresh("netraw-apps"), fresh("netraw-system")
	label := map[string]string{"netraw-test": release}
	for _, ns := range []string{apps, exempt} {
		g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: label}})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}})).To(Succeed())
	}
	out, err := template(release, "--set", "podIdentity.enabled=true", "--set", "podIdentity.netRawPolicy.validationActions={Deny}",
		"--set", "podIdentity.netRawPolicy.exemptNamespaces={"+exempt+"}", "--show-only", "templates/nmi-netraw-policy.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	objs := mustDecode(t, out)
	g.Expect(objs).To(HaveLen(2))
	for _, obj := range objs {
		if obj.GetKind() == "ValidatingAdmissionPolicyBinding" {
			// Only this test's namespaces, next to the chart's own exemptions: other tests on this apiserver create
			// pods without security contexts.
			g.Expect(unstructured.SetNestedStringMap(obj.Object, label, "spec", "matchResources", "namespaceSelector", "matchLabels")).To(Succeed())
		}
		g.Expect(env.Client.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
	}

	dropping := func(drop ...corev1.Capability) *corev1.SecurityContext {
		return &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: drop}}
	}
	// adding drops ALL and adds caps back, the way a pod asks for one capability.
	adding := func(add ...corev1.Capability) *corev1.SecurityContext {
		return &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: add}}
	}
	n := 0
	pod := func(ns string, containers ...corev1.Container) *corev1.Pod {
		n++
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pod-%d", n)},
			Spec: corev1.PodSpec{Containers: containers}}
	}
	container := func(name string, sc *corev1.SecurityContext) corev1.Container {
		return corev1.Container{Name: name, Image: "app", SecurityContext: sc}
	}
	// Policies take effect a moment after they are created: fresh pods until one is refused.
	g.Eventually(func() error {
		return env.Client.Create(ctx, pod(apps, container("app", nil)))
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgNetRaw)))

	for name, tc := range map[string]struct {
		pod     *corev1.Pod
		refused string // the containers named in the refusal; "" for admitted
	}{
		"drops ALL":     {pod: pod(apps, container("app", dropping("ALL")))},
		"drops NET_RAW": {pod: pod(apps, container("app", dropping("NET_RAW")))},
		// containerd and CRI-O upper-case a name and prefix CAP_, so lower and mixed case drop it, as does "all".
		"drops net_raw": {pod: pod(apps, container("app", dropping("net_raw")))},
		"drops Net_Raw": {pod: pod(apps, container("app", dropping("Net_Raw")))},
		"drops all":     {pod: pod(apps, container("app", dropping("all")))},
		// ... and a CAP_ prefix becomes CAP_CAP_NET_RAW, which drops nothing.
		"drops CAP_NET_RAW (drops nothing)": {pod: pod(apps, container("app", dropping("CAP_NET_RAW"))), refused: "app"},
		"drops cap_net_raw (drops nothing)": {pod: pod(apps, container("app", dropping("cap_net_raw"))), refused: "app"},
		"drops CAP_ALL (drops nothing)":     {pod: pod(apps, container("app", dropping("CAP_ALL"))), refused: "app"},
		// Every spelling a runtime could read as NET_RAW or ALL is refused as an add.
		"adds net_raw back":     {pod: pod(apps, container("app", adding("net_raw"))), refused: "app"},
		"adds Net_Raw back":     {pod: pod(apps, container("app", adding("Net_Raw"))), refused: "app"},
		"adds CAP_NET_RAW back": {pod: pod(apps, container("app", adding("CAP_NET_RAW"))), refused: "app"},
		"adds cap_net_raw back": {pod: pod(apps, container("app", adding("cap_net_raw"))), refused: "app"},
		"adds all back":         {pod: pod(apps, container("app", adding("all"))), refused: "app"},
		"adds All back":         {pod: pod(apps, container("app", adding("All"))), refused: "app"},
		"adds cap_all back":     {pod: pod(apps, container("app", adding("cap_all"))), refused: "app"},
		"adds another one":      {pod: pod(apps, container("app", adding("NET_BIND_SERVICE", "cap_chown")))},
		"init container adds net_raw": {pod: withInit(pod(apps, container("app", dropping("ALL"))),
			container("setup", adding("net_raw"))), refused: "setup"},
		"no security context":     {pod: pod(apps, container("app", nil)), refused: "app"},
		"drops something else":    {pod: pod(apps, container("app", dropping("SYS_ADMIN"))), refused: "app"},
		"adds NET_RAW back":       {pod: pod(apps, container("app", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_RAW"}}})), refused: "app"},
		"privileged":              {pod: pod(apps, container("app", &corev1.SecurityContext{Privileged: ptrTo(true), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}})), refused: "app"},
		"one of two containers":   {pod: pod(apps, container("app", dropping("ALL")), container("sidecar", nil)), refused: "sidecar"},
		"exempt namespace":        {pod: pod(exempt, container("app", nil))},
		"an init container keeps": {pod: withInit(pod(apps, container("app", dropping("ALL"))), container("setup", nil)), refused: "setup"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			err := env.Client.Create(ctx, tc.pod)
			if tc.refused == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(msgNetRaw)))
			g.Expect(err).To(MatchError(HaveSuffix("containers holding it: " + tc.refused)))
		})
	}

	// kubectl debug adds an ephemeral container to a running pod: one that keeps NET_RAW is refused, one that drops
	// it is added.
	running := pod(apps, container("app", dropping("ALL")))
	g.Expect(env.Client.Create(ctx, running)).To(Succeed())
	debug := func(name string, sc *corev1.SecurityContext) error {
		p := running.DeepCopy()
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: name, Image: "busybox", SecurityContext: sc}})
		return env.Client.SubResource("ephemeralcontainers").Update(ctx, p)
	}
	g.Expect(debug("debugger", nil)).To(MatchError(HaveSuffix("containers holding it: debugger")))
	g.Expect(debug("sneaky", adding("cap_net_raw"))).To(MatchError(HaveSuffix("containers holding it: sneaky")))
	g.Expect(debug("careful", dropping("NET_RAW"))).To(Succeed())
}

func withInit(p *corev1.Pod, init corev1.Container) *corev1.Pod {
	p.Spec.InitContainers = append(p.Spec.InitContainers, init)
	return p
}
