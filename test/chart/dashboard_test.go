/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/nmi"
)

// Every query of the dashboard and the alerts names a metric the programs serve: the controller's from a scrape of
// the real binary that minted a credential on the test apiserver, the node agent's from its metrics registry after it
// answered a request. A renamed metric or a typo in a query fails here rather than as an empty panel.
func TestDashboardAndAlertsQueryServedMetrics(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "--set", "monitoring.dashboard.enabled=true", "--set", "monitoring.rules.create=true",
		"--set", "podIdentity.enabled=true")
	cm := find(objs, "ConfigMap", "acrpull-grafana-dashboard")
	g.Expect(cm).NotTo(BeNil())
	g.Expect(cm.GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"), "kube-prometheus-stack's sidecar selects this label")
	dashboard, _, _ := unstructured.NestedString(cm.Object, "data", "acrpull.json")
	queries := dashboardQueries(t, dashboard)
	g.Expect(len(queries)).To(BeNumerically(">=", 9))

	rule := find(objs, "PrometheusRule", "acrpull")
	g.Expect(rule).NotTo(BeNil())
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	for _, grp := range groups {
		for _, r := range grp.(map[string]any)["rules"].([]any) {
			queries = append(queries, r.(map[string]any)["expr"].(string))
		}
	}

	served := scrapeController(t)
	for name := range nodeAgentMetrics(t) {
		served[name] = true
	}
	served["up"] = true // Prometheus's own, for every target
	for _, q := range queries {
		names := metricNames(q)
		g.Expect(names).NotTo(BeEmpty(), "query %q names no metric", q)
		for _, name := range names {
			g.Expect(served).To(HaveKey(name), "query %q names %s, which no program serves", q, name)
		}
	}
}

// dashboardQueries are the PromQL expressions of every panel target, and the metric of each label_values variable.
func dashboardQueries(t *testing.T, dashboard string) []string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Type       string
				Definition string
			}
		}
	}
	if err := json.Unmarshal([]byte(dashboard), &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var queries []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			queries = append(queries, target.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+), *[a-zA-Z_]+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Fatalf("variable query %q is not label_values(selector, label)", v.Definition)
		}
		queries = append(queries, m[1])
	}
	return queries
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames are the metric names a PromQL expression selects: identifiers left once strings, label matchers,
// ranges and grouping clauses are gone, that are neither function calls nor keywords.
func metricNames(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, m := range promqlIdent.FindAllStringSubmatch(s, -1) {
		if m[1] != "" || promqlKeywords[strings.ToLower(m[0])] {
			continue
		}
		names = append(names, m[0])
	}
	return names
}

// exposedNames are the series names in a Prometheus text exposition (histograms as _bucket, _sum and _count).
func exposedNames(t *testing.T, body io.Reader) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// nodeAgentMetrics are the series the node agent's registry exposes once it answered and refused a request.
func nodeAgentMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := nmi.NewMetrics(reg)
	m.Operation("acquire_token", http.StatusOK, "apps", "https://management.azure.com/", time.Millisecond)
	m.Operation("acquire_token", http.StatusForbidden, "apps", "https://management.azure.com/", time.Millisecond)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return exposedNames(t, resp.Body)
}

// scrapeController installs the chart, runs the controller binary with it against a fake Azure until a binding is
// Ready, and returns the names its /metrics serves.
func scrapeController(t *testing.T) map[string]bool {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns, apps := fresh("dashboard"), fresh("acrpull-dashboard"), fresh("dashboard-apps")
	const (
		registryHost = "example.azurecr.io"
		clientID     = "22222222-2222-2222-2222-222222222222"
	)
	_, args := installChart(t, release, ns)

	cloud, environ := startFakeAzure(t)
	cloud.AddRegistry(azurefake.Registry{Host: registryHost})
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
	cloud.AddRoleAssignment(clientID, registryHost, []string{"app"}, []string{"pull"})

	kubeconfig := serviceAccountKubeconfig(t, ns, "acrpull")
	metricsAddr := freeLoopbackAddr(t)
	ctl := startController(t, append(withTestListeners(args, metricsAddr), "--kubeconfig="+kubeconfig), environ)

	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: apps}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "app"}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "mi"},
		Spec: acrv1beta2.AcrPullBindingSpec{
			ACR: acrv1beta2.AcrConfiguration{Server: registryHost, Scope: "repository:app:pull",
				Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: clientID}},
			ServiceAccountName: "app"}})).To(Succeed())

	scrape := func(g Gomega) string {
		g.Expect(ctl.running()).To(Succeed())
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		body, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(HaveOccurred())
		return string(body)
	}
	const readyCount = `acrpull_bindings{controller="acrpullbinding-v1beta2",ready="True",reason="TokenMinted"} 1`
	var names map[string]bool
	g.Eventually(func(g Gomega) {
		body := scrape(g)
		names = exposedNames(t, strings.NewReader(body))
		// A minted credential: every acrpull series the dashboard needs has been written once.
		g.Expect(names).To(HaveKey("acrpull_token_expiry_timestamp_seconds"))
		g.Expect(body).To(ContainSubstring(readyCount))
	}).WithTimeout(60*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "controller log:\n%s", ctl.logs.String())

	// A deleted binding leaves the readiness count (and its expiry series) behind.
	g.Expect(env.Client.Delete(ctx, &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "mi"}})).To(Succeed())
	g.Eventually(func(g Gomega) {
		body := scrape(g)
		g.Expect(body).NotTo(ContainSubstring(readyCount))
		g.Expect(body).NotTo(ContainSubstring(`binding="mi"`))
	}).WithTimeout(30*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "controller log:\n%s", ctl.logs.String())
	var acrpull []string
	for n := range names {
		if strings.HasPrefix(n, "acrpull_") {
			acrpull = append(acrpull, n)
		}
	}
	sort.Strings(acrpull)
	t.Logf("the controller serves %d series names, acrpull's: %s", len(names), strings.Join(acrpull, " "))
	return names
}

// freeLoopbackAddr is a loopback address with a port nothing listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("127.0.0.1:%d", l.Addr().(*net.TCPAddr).Port)
}
