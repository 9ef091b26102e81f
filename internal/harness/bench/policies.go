/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"

	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// The chart's cluster-wide admission objects: what a cluster running acrpull has besides the CRDs and the controller
// itself. The finalizer policy's template renders nothing unless it is on and the apiserver serves its API.
const (
	validatingPoliciesTemplate = "templates/admission-policies.yaml"
	finalizerPolicyTemplate    = "templates/finalizer-policy.yaml"
)

// installChartPolicies renders one of the chart's policy templates the way `helm install` would for this apiserver
// (its version and the admission APIs it serves) and creates what it holds. The finalizer policy's needs an
// apiserver serving MutatingAdmissionPolicy; on another, helm would render nothing, so nothing is installed.
func (b *bench) installChartPolicies(ctx context.Context, template string) error {
	disc, err := discovery.NewDiscoveryClientForConfig(b.env.Config)
	if err != nil {
		return err
	}
	version, err := disc.ServerVersion()
	if err != nil {
		return err
	}
	args := []string{"template", "acrpull", filepath.Join(testenv.ModuleRoot(), "config", "helm"),
		"--namespace", "acrpull", "--kube-version", version.GitVersion, "--set", fmt.Sprintf("finalizerOnCreate=%t", b.o.FinalizerOnCreate),
		"--show-only", template}
	mutatingServed := false
	if resources, err := disc.ServerResourcesForGroupVersion("admissionregistration.k8s.io/v1"); err == nil {
		for _, r := range resources.APIResources {
			args = append(args, "--api-versions", "admissionregistration.k8s.io/v1/"+r.Kind)
			mutatingServed = mutatingServed || r.Kind == "MutatingAdmissionPolicy"
		}
	}
	// helm refuses to show a template that rendered nothing.
	if template == finalizerPolicyTemplate && !mutatingServed {
		return nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(b.env.AssetsDir, "helm"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(cmd.Environ(), "HELM_CONFIG_HOME="+b.dir, "HELM_CACHE_HOME="+b.dir, "HELM_DATA_HOME="+b.dir)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("helm template (make bench builds helm; KUBEBUILDER_ASSETS must hold it): %w: %s", err, stderr.String())
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	var kinds []string
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			return err
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := b.c.Create(ctx, obj); err != nil {
			return fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		kinds = append(kinds, obj.GetKind()+"/"+obj.GetName())
	}
	b.logf("installed the chart's admission policies: %s", strings.Join(kinds, ", "))
	return nil
}
