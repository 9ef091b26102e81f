/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// promtool runs the promtool hack/test-env.sh builds (WITH_HELM=1) and returns its combined output.
func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if err := trackInputs(); err != nil {
		t.Fatal(err)
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(assets, "promtool")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the rule tests need promtool in %s: run `WITH_HELM=1 hack/test-env.sh`: %v", assets, err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}

// renderedRules renders the chart's PrometheusRule (with the node agent's group) and writes its spec.groups as a
// Prometheus rules file, the form promtool and Azure's rule group converters read.
func renderedRules(t *testing.T) string {
	t.Helper()
	objs := mustTemplate(t, "--set", "monitoring.rules.create=true", "--set", "podIdentity.enabled=true")
	rule := find(objs, "PrometheusRule", "acrpull")
	if rule == nil {
		t.Fatal("no PrometheusRule rendered with monitoring.rules.create=true")
	}
	groups, found, err := unstructured.NestedSlice(rule.Object, "spec", "groups")
	if err != nil || !found {
		t.Fatalf("PrometheusRule has no spec.groups: %v", err)
	}
	data, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrometheusRuleRendering(t *testing.T) {
	const rulesKind = "monitoring.coreos.com/v1/PrometheusRule"
	for _, tc := range []struct {
		name      string
		flags     []string
		want      bool
		nodeAgent bool
	}{
		{"auto without the PrometheusRule kind", []string{"--api-versions", "monitoring.coreos.com/v1"}, false, false},
		{"auto with the PrometheusRule kind", []string{"--api-versions", rulesKind}, true, false},
		{"forced off", []string{"--api-versions", rulesKind, "--set", "monitoring.rules.create=false"}, false, false},
		{"with the node agent", []string{"--set", "monitoring.rules.create=true", "--set", "podIdentity.enabled=true"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			objs := mustTemplate(t, append(tc.flags, "--set", "monitoring.rules.labels.release=prometheus")...)
			rules := ofKind(objs, "PrometheusRule")
			if !tc.want {
				g.Expect(rules).To(BeEmpty())
				return
			}
			g.Expect(rules).To(HaveLen(1))
			g.Expect(rules[0].GetLabels()).To(HaveKeyWithValue("release", "prometheus"))
			groups, _, _ := unstructured.NestedSlice(rules[0].Object, "spec", "groups")
			var names []string
			for _, grp := range groups {
				names = append(names, grp.(map[string]any)["name"].(string))
			}
			if tc.nodeAgent {
				g.Expect(names).To(ConsistOf("acrpull.controller", "acrpull.node-agent"))
			} else {
				g.Expect(names).To(ConsistOf("acrpull.controller"))
			}
		})
	}
}

// The scrape objects go to the API group the value names: Azure Managed Prometheus reads only its own.
func TestMonitorAPIGroup(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "--api-versions", "azmonitoring.coreos.com/v1", "--set", "monitoring.apiGroup=azmonitoring.coreos.com",
		"--set", "podIdentity.enabled=true")
	var monitors []string
	for _, o := range objs {
		if o.GetKind() == "PodMonitor" {
			g.Expect(o.GetAPIVersion()).To(Equal("azmonitoring.coreos.com/v1"))
			jobLabel, _, _ := unstructured.NestedString(o.Object, "spec", "jobLabel")
			g.Expect(jobLabel).To(Equal("app.kubernetes.io/name"), "the rules and dashboard select job=\"acrpull\" and job=\"acrpull-nmi\"")
			monitors = append(monitors, o.GetName())
		}
	}
	g.Expect(monitors).To(ConsistOf("acrpull", "acrpull-nmi"))
	g.Expect(ofKind(objs, "PrometheusRule")).To(BeEmpty(), "Azure Managed Prometheus has no PrometheusRule kind")

	// Only the Prometheus Operator's group in the cluster: "auto" does not render into the Azure group.
	objs = mustTemplate(t, "--api-versions", "monitoring.coreos.com/v1", "--set", "monitoring.apiGroup=azmonitoring.coreos.com")
	g.Expect(ofKind(objs, "PodMonitor")).To(BeEmpty())
}

func TestPrometheusRulesCheck(t *testing.T) {
	out, err := promtool(t, "check", "rules", renderedRules(t))
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS: 5 rules found") {
		t.Errorf("promtool check rules found other than the chart's 5 alerts:\n%s", out)
	}
}

// Each alert fires on the series it is about and stays quiet on healthy ones, through promtool's rule unit tests.
func TestPrometheusRulesFire(t *testing.T) {
	rules := renderedRules(t)
	tests := filepath.Join(filepath.Dir(rules), "rules_test.yaml")
	if err := os.WriteFile(tests, []byte(ruleTests), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := promtool(t, "test", "rules", tests); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// ruleTests are promtool unit tests of the rendered rules (rules.yaml beside them). Series carry the labels the
// chart's monitors give them: job from app.kubernetes.io/name, namespace of the scraped pod (the chart's, "acrpull"),
// and a metric's own namespace label renamed exported_namespace.
const ruleTests = `
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - name: a credential near expiry fires; one far from it does not
    interval: 1m
    input_series:
      - series: 'acrpull_token_expiry_timestamp_seconds{job="acrpull",namespace="acrpull",controller="acrpullbinding-v1beta2",exported_namespace="apps",binding="soon"}'
        values: '1800x40'
      - series: 'acrpull_token_expiry_timestamp_seconds{job="acrpull",namespace="acrpull",controller="acrpullbinding-v1beta2",exported_namespace="apps",binding="fresh"}'
        values: '100000x40'
    alert_rule_test:
      - eval_time: 10m
        alertname: AcrPullCredentialExpiringSoon
      - eval_time: 20m
        alertname: AcrPullCredentialExpiringSoon
        exp_alerts:
          - exp_labels: {severity: critical, job: acrpull, namespace: acrpull, controller: acrpullbinding-v1beta2, exported_namespace: apps, binding: soon}
            exp_annotations:
              summary: "A binding's registry credential expires within 15 minutes."
              description: "acrpullbinding-v1beta2 apps/soon: the token in its pull secret expires in 10m 0s and was not refreshed; its Ready condition says why."

  - name: mints failing with no success fire; failures beside successes do not
    interval: 1m
    input_series:
      - series: 'acrpull_mint_attempts_total{job="acrpull",namespace="acrpull",controller="acrpullbinding-v1beta2",reason="AzureUnavailable"}'
        values: '0+2x60'
      - series: 'acrpull_mint_attempts_total{job="acrpull",namespace="acrpull",controller="acrpullbinding-v1beta1",reason="AzureUnavailable"}'
        values: '0+2x60'
      - series: 'acrpull_mint_attempts_total{job="acrpull",namespace="acrpull",controller="acrpullbinding-v1beta1",reason="TokenMinted"}'
        values: '0+1x60'
    alert_rule_test:
      - eval_time: 10m
        alertname: AcrPullMintFailing
      - eval_time: 40m
        alertname: AcrPullMintFailing
        exp_alerts:
          - exp_labels: {severity: warning, namespace: acrpull, controller: acrpullbinding-v1beta2, reason: AzureUnavailable}
            exp_annotations:
              summary: "Every credential mint failed for 30 minutes."
              description: "acrpullbinding-v1beta2: mints fail with AzureUnavailable and none succeeded; see the bindings' Ready conditions and the controller's log."

  - name: bindings not Ready for 15 minutes fire; Ready ones do not
    interval: 1m
    input_series:
      - series: 'acrpull_bindings{job="acrpull",namespace="acrpull",controller="acrpullbinding-v1beta2",ready="False",reason="ServiceAccountNotFound"}'
        values: '3x30'
      - series: 'acrpull_bindings{job="acrpull",namespace="acrpull",controller="acrpullbinding-v1beta2",ready="True",reason="TokenMinted"}'
        values: '5x30'
    alert_rule_test:
      - eval_time: 10m
        alertname: AcrPullBindingsNotReady
      - eval_time: 20m
        alertname: AcrPullBindingsNotReady
        exp_alerts:
          - exp_labels: {severity: warning, namespace: acrpull, controller: acrpullbinding-v1beta2, ready: "False", reason: ServiceAccountNotFound}
            exp_annotations:
              summary: "Bindings have not been Ready for 15 minutes."
              description: "3 acrpullbinding-v1beta2 bindings are not Ready (ServiceAccountNotFound); kubectl get acrpullbindings -A shows which."

  - name: a controller down for 10 minutes fires; one up does not
    interval: 1m
    input_series:
      - series: 'up{job="acrpull",namespace="acrpull",pod="acrpull-1"}'
        values: '1x5 0x30'
      - series: 'up{job="other",namespace="acrpull",pod="other-1"}'
        values: '1x35'
    alert_rule_test:
      - eval_time: 4m
        alertname: AcrPullControllerAbsent
      - eval_time: 25m
        alertname: AcrPullControllerAbsent
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "No acrpull controller has been scraped for 10 minutes."
              description: 'No target of job "acrpull" is up: the controller is down, or Prometheus no longer scrapes it. Credentials are not refreshed while it is away.'

  - name: the node agent refusing requests fires; a few refusals do not
    interval: 1m
    input_series:
      - series: 'aadpodidentity_nmi_operations_duration_seconds_count{job="acrpull-nmi",namespace="acrpull",pod="acrpull-nmi-a",operation_type="token",status_code="403",exported_namespace="apps",resource="https://management.azure.com/"}'
        values: '0+60x40'
      - series: 'aadpodidentity_nmi_operations_duration_seconds_count{job="acrpull-nmi",namespace="acrpull",pod="acrpull-nmi-a",operation_type="token",status_code="500",exported_namespace="apps",resource="https://management.azure.com/"}'
        values: '0+1x40'
      - series: 'aadpodidentity_nmi_operations_duration_seconds_count{job="acrpull-nmi",namespace="acrpull",pod="acrpull-nmi-a",operation_type="token",status_code="200",exported_namespace="apps",resource="https://management.azure.com/"}'
        values: '0+600x40'
    alert_rule_test:
      - eval_time: 10m
        alertname: AcrPullNodeAgentRefusing
      - eval_time: 35m
        alertname: AcrPullNodeAgentRefusing
        exp_alerts:
          - exp_labels: {severity: warning, namespace: acrpull, status_code: "403"}
            exp_annotations:
              summary: "The pod identity node agent keeps refusing token requests."
              description: "The node agents answer 1 requests a second with HTTP 403; their logs name the pods."
`
