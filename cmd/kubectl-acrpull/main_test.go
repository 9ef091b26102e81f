/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acrpull/acrpull/internal/harness/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// The built binary on the PATH is a kubectl plugin: kubectl finds it for `kubectl acrpull`, and the standard
// kubeconfig flags mean what they mean to kubectl.
func TestKubectlRunsThePluginFromThePath(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "kubectl-acrpull"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(env.AssetsDir, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+env.KubeconfigPath)
		out, err := cmd.CombinedOutput()
		t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
		return string(out), err
	}

	out, err := kubectl("plugin", "list")
	if err != nil || !strings.Contains(out, filepath.Join(bin, "kubectl-acrpull")) {
		t.Errorf("kubectl plugin list does not show the plugin: %v", err)
	}
	out, err = kubectl("acrpull", "why", "ghost", "-n", "kube-system")
	if err != nil || !strings.Contains(out, `Reason:  PodNotFound: no pod "ghost" in namespace "kube-system"`) {
		t.Errorf("kubectl acrpull why ghost: %v", err)
	}
	out, err = kubectl("acrpull", "status", "-A")
	if err != nil || !strings.Contains(out, "No AcrPullBindings found.") {
		t.Errorf("kubectl acrpull status -A: %v", err)
	}
	out, err = kubectl("acrpull", "status", "--context", "no-such-context")
	if err == nil || !strings.Contains(out, `context "no-such-context" does not exist`) {
		t.Errorf("kubectl acrpull --context no-such-context: want kubectl's error and a failure, got %v", err)
	}
}
