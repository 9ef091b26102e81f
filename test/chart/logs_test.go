/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// An operator whose controller sits behind a proxy that refuses connections reads why in the log: the real binary,
// configured only by its flags and the standard proxy environment, logs the binding's failure with the proxy's
// address and what it did, not "no response". A failure to reach Azure is transient to the controller (it cannot
// tell a refusing proxy from an outage), so the line is at info level, as every binding's entry into an outage is.
func TestControllerLogsWhyAMintFails(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, shard := fresh("logs"), fresh("shard")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	proxy := l.Addr().String()
	g.Expect(l.Close()).To(Succeed())

	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &acrv1beta2.AcrPullBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "behind-proxy", Labels: map[string]string{"shard": shard}},
		Spec: acrv1beta2.AcrPullBindingSpec{
			ACR:                acrv1beta2.AcrConfiguration{Server: "example.azurecr.io", Scope: "repository:app:pull", Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: "11111111-1111-1111-1111-111111111111"}},
			ServiceAccountName: "app",
		}})).To(Succeed())

	// Only this test's binding (--label-selector), and no listeners other tests could collide with.
	ctl := startController(t, []string{"--kubeconfig=" + env.KubeconfigPath, "--label-selector=shard=" + shard,
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0"},
		[]string{"HTTPS_PROXY=http://" + proxy, "HTTP_PROXY=http://" + proxy, "NO_PROXY=127.0.0.1,localhost"})

	want := "proxy " + proxy + " refused the connection"
	g.Eventually(func() string {
		for _, line := range strings.Split(ctl.logs.String(), "\n") {
			if strings.Contains(line, `"level":"info"`) && strings.Contains(line, "Binding is not ready") &&
				strings.Contains(line, `"name":"behind-proxy"`) && strings.Contains(line, want) {
				return line
			}
		}
		return ""
	}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).ShouldNot(BeEmpty(), "controller log:\n%s", ctl.logs.String())

	// The line is logged as the pass ends, just before its status patch.
	g.Eventually(func(g Gomega) string {
		b := &acrv1beta2.AcrPullBinding{}
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "behind-proxy"}, b)).To(Succeed())
		return b.Status.Error
	}).WithTimeout(10*time.Second).Should(ContainSubstring(want), "the status says the same")
}
