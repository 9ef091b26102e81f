/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// With monitoring.secure the real controller, running under the chart's RBAC, serves metrics only to a caller the
// apiserver authenticates and authorizes: nobody without a token, nobody without the chart's metrics-reader role,
// and the chart's own scraper account.
func TestSecureMetricsNeedAnAuthorizedCaller(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns := fresh("metrics-auth"), fresh("acrpull-metrics-auth")
	_, args := installChart(t, release, ns, "--set", "monitoring.secure=true", "--set", "monitoring.create=false")
	g.Expect(args).To(ContainElement("--metrics-secure"))

	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nobody"}})).To(Succeed())
	addr := freeLoopbackAddr(t)
	args = withTestListeners(args, addr)
	for i, a := range args {
		if a == "--leader-elect" {
			args[i] = "--leader-elect=false"
		}
	}
	// Serve no binding of the other tests: this one only looks at the metrics endpoint.
	startController(t, append(args, "--label-selector=acrpull.test/none=none", "--kubeconfig="+serviceAccountKubeconfig(t, ns, "acrpull")), nil)

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
	code, _ := scrape(serviceAccountToken(t, ns, "nobody"))
	g.Expect(code).To(Equal(http.StatusForbidden), "an account without the reader role: 403")
	code, body := scrape(serviceAccountToken(t, ns, "acrpull-metrics-scraper"))
	g.Expect(code).To(Equal(http.StatusOK), "the chart's scraper account: 200 (%s)", body)
	g.Expect(body).To(ContainSubstring("acrpull_build_info"))
	// A token the apiserver cannot read is refused too (controller-runtime's filter answers 500 for it, not 401).
	code, body = scrape("not-a-token")
	g.Expect(code).NotTo(Equal(http.StatusOK))
	g.Expect(body).NotTo(ContainSubstring("acrpull_build_info"))
}
