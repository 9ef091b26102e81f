/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// installChart renders the chart as release into namespace (without its CRDs, which the test apiserver has) with
// any further helm template flags (--set, a values file), creates every object but the service-account token
// Secrets (no token controller runs here), and returns the objects and the controller Deployment's arguments.
func installChart(t *testing.T, release, namespace string, helmFlags ...string) ([]*unstructured.Unstructured, []string) {
	t.Helper()
	flags := append([]string{"--set", "namespace=" + namespace, "--set", "createNamespace=true", "--set", "crds.install=false"}, helmFlags...)
	out, err := template(release, flags...)
	if err != nil {
		t.Fatal(err)
	}
	objs := mustDecode(t, out)
	for _, obj := range objs {
		if obj.GetKind() == "Secret" {
			continue
		}
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	return objs, mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull").Spec.Template.Spec.Containers[0].Args
}

// serviceAccountToken is a token of the service account namespace/name, as its pod would mount one.
func serviceAccountToken(t *testing.T, namespace, name string) string {
	t.Helper()
	tr := &authenticationv1.TokenRequest{}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := env.Client.SubResource("token").Create(context.Background(), sa, tr); err != nil {
		t.Fatalf("a token for %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// serviceAccountKubeconfig writes a kubeconfig that acts as the service account namespace/name, so a program run
// with it is bound by exactly that account's RBAC and the admission policies that name it.
func serviceAccountKubeconfig(t *testing.T, namespace, name string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: serviceAccountToken(t, namespace, name)}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: "test", AuthInfo: name}
	kc.CurrentContext = name
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// startFakeAzure starts the fake Azure cloud for one test and returns it with the environment that makes a controller
// process reach it, as a pod is pointed at a proxy and a CA: every Azure host through its proxy, its CA trusted.
func startFakeAzure(t *testing.T) (*azurefake.Cloud, []string) {
	t.Helper()
	cloud := azurefake.StartForTest(t)
	caFile := filepath.Join(t.TempDir(), "fake-azure-ca.pem")
	if err := os.WriteFile(caFile, cloud.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	proxy := cloud.ProxyURL().String()
	return cloud, []string{"HTTPS_PROXY=" + proxy, "HTTP_PROXY=" + proxy, "NO_PROXY=127.0.0.1,localhost", "SSL_CERT_FILE=" + caFile}
}

// withTestListeners is the chart's controller arguments with the metrics listener on metricsAddr ("0": none) and the
// probe listener on a free loopback port: several test processes may share this machine's ports.
func withTestListeners(args []string, metricsAddr string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		switch {
		case strings.HasPrefix(a, "--metrics-bind-address="):
			out[i] = "--metrics-bind-address=" + metricsAddr
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			out[i] = "--health-probe-bind-address=127.0.0.1:0"
		}
	}
	return out
}

// controllerProcess is the real controller binary running for one test.
type controllerProcess struct {
	logs   testenv.Output
	exited chan error
}

// startController runs the controller binary with args and the environment environ (HOME is set). At the end of the
// test it is stopped (SIGTERM, then SIGKILL after 15 s) and, if the test failed, its log shown.
func startController(t *testing.T, args, environ []string) *controllerProcess {
	t.Helper()
	p := &controllerProcess{exited: make(chan error, 1)}
	cmd := exec.Command(programBinary(t, "acrpull"), args...)
	cmd.Env = append([]string{"HOME=" + t.TempDir()}, environ...)
	cmd.Stdout, cmd.Stderr = &p.logs, &p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("controller log:\n%s", p.logs.String())
		}
	})
	return p
}

// running fails when the controller has exited.
func (p *controllerProcess) running() error {
	select {
	case err := <-p.exited:
		p.exited <- err
		return errExited{err}
	default:
		return nil
	}
}

type errExited struct{ err error }

func (e errExited) Error() string { return "the controller exited: " + errString(e.err) }

func errString(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}
