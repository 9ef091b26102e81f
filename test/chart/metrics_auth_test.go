/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/acrpull/acrpull/internal/testenv"
)

// With monitoring.secure the real controller, running under the chart's RBAC, serves metrics only to a caller the
// apiserver authenticates and authorizes: nobody without a token, nobody without the chart's metrics-reader role,
// and the chart's own scraper account.
func TestSecureMetricsNeedAnAuthorizedCaller(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns := fresh("metrics-auth"), fresh("acrpull-metrics-auth")
	out, err := template(release, "--set", "namespace="+ns, "--set", "createNamespace=true", "--set", "crds.install=false",
		"--set", "monitoring.secure=true", "--set", "monitoring.create=false")
	g.Expect(err).NotTo(HaveOccurred())
	objs := mustDecode(t, out)
	for _, obj := range objs {
		if obj.GetKind() == "Secret" {
			continue // a service-account token Secret: no token controller runs here, TokenRequest stands in below
		}
		g.Expect(env.Client.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}
	args := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull").Spec.Template.Spec.Containers[0].Args
	g.Expect(args).To(ContainElement("--metrics-secure"))

	token := func(sa string) string {
		tr := &authenticationv1.TokenRequest{}
		acct := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
		g.Expect(env.Client.SubResource("token").Create(ctx, acct, tr)).To(Succeed())
		return tr.Status.Token
	}
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nobody"}})).To(Succeed())

	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	kc.AuthInfos["acrpull"] = &clientcmdapi.AuthInfo{Token: token("acrpull")}
	kc.Contexts["acrpull"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "acrpull"}
	kc.CurrentContext = "acrpull"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(clientcmd.WriteToFile(*kc, kubeconfig)).To(Succeed())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	addr := l.Addr().String()
	g.Expect(l.Close()).To(Succeed())
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--metrics-bind-address="):
			args[i] = "--metrics-bind-address=" + addr
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			args[i] = "--health-probe-bind-address=127.0.0.1:0"
		case strings.HasPrefix(a, "--label-selector="), a == "--leader-elect":
			args[i] = "--leader-elect=false"
		}
	}
	// Serve no binding of the other tests: this one only looks at the metrics endpoint.
	args = append(args, "--label-selector=acrpull.test/none=none", "--kubeconfig="+kubeconfig)
	var logs testenv.Output
	cmd := exec.Command(programBinary(t, "acrpull"), args...)
	cmd.Env = []string{"HOME=" + t.TempDir()}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	g.Expect(cmd.Start()).To(Succeed())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})

	scrape := func(bearer string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		// The certificate is self-signed, as a scraper is told by the chart's monitor (insecureSkipVerify).
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	g.Eventually(func() int { code, _ := scrape(""); return code }).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).
		Should(Equal(http.StatusUnauthorized), "no token: 401")
	code, _ := scrape(token("nobody"))
	g.Expect(code).To(Equal(http.StatusForbidden), "an account without the reader role: 403")
	code, body := scrape(token("acrpull-metrics-scraper"))
	g.Expect(code).To(Equal(http.StatusOK), "the chart's scraper account: 200 (%s)", body)
	g.Expect(body).To(ContainSubstring("acrpull_build_info"))
	// A token the apiserver cannot read is refused too (controller-runtime's filter answers 500 for it, not 401).
	code, body = scrape("not-a-token")
	g.Expect(code).NotTo(Equal(http.StatusOK))
	g.Expect(body).NotTo(ContainSubstring("acrpull_build_info"))
}
