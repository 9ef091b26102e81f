/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package testenv starts a real kube-apiserver and etcd for tests, configured like a cluster that acrpull runs in:
// the ServiceAccount admission plugin on (envtest turns it off), TokenRequest with a known issuer and signing key (so
// the fake Entra ID can verify service-account assertions), and acrpull's CRDs installed.
package testenv

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/acrpull/acrpull/internal/scheme"
)

// Issuer is the service-account token issuer of the test apiserver; federated credentials in the fake cloud name it.
const Issuer = "https://oidc.acrpull.test"

// Env is a running control plane.
type Env struct {
	// Config reaches the apiserver as a cluster admin.
	Config *rest.Config
	// Client is a direct (uncached) client with acrpull's scheme.
	Client client.Client
	// SigningKey is the public half of the key that signs service-account tokens.
	SigningKey crypto.PublicKey
	// KubeconfigPath is a kubeconfig file for processes started by the test (a controller binary, kubectl).
	KubeconfigPath string
	// AssetsDir holds kube-apiserver, etcd, kubectl and the registry binary.
	AssetsDir string

	env     *envtest.Environment
	workDir string
}

// Start starts etcd and kube-apiserver and installs acrpull's CRDs. Call Stop when done.
func Start() (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	workDir, err := os.MkdirTemp("", "acrpull-testenv-")
	if err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(workDir, "sa-signing.key")
	pubFile := filepath.Join(workDir, "sa-signing.pub")
	if err := writePEM(keyFile, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(pubFile, "PUBLIC KEY", pub); err != nil {
		return nil, err
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(ModuleRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	api := env.ControlPlane.GetAPIServer()
	// A directory of our own (envtest would make a fresh one on every start) keeps the serving certificate, and with
	// it every client's trust, across Restart.
	api.CertDir = filepath.Join(workDir, "apiserver")
	if err := os.Mkdir(api.CertDir, 0o700); err != nil {
		return nil, err
	}
	args := api.Configure()
	// envtest disables ServiceAccount admission because no controller creates "default" accounts; acrpull depends on
	// that plugin copying a service account's imagePullSecrets into pods, so the tests run with it.
	args.Disable("disable-admission-plugins")
	args.Set("enable-admission-plugins", "ServiceAccount,NamespaceLifecycle")
	args.Set("service-account-issuer", Issuer)
	args.Set("service-account-signing-key-file", keyFile)
	args.Set("service-account-key-file", pubFile)
	args.Set("api-audiences", Issuer)
	// Loopback-only machines and network namespaces: nothing else to advertise.
	args.Set("advertise-address", "127.0.0.1")
	args.Set("endpoint-reconciler-type", "none")

	// etcd's 2 GiB default quota is below what 100,000 bindings' secrets and revisions between compactions take
	// (164 MiB at 10,000 during a burst); 8 GiB is etcd's suggested maximum and what large clusters run with.
	env.ControlPlane.Etcd = &envtest.Etcd{}
	env.ControlPlane.Etcd.Configure().Set("quota-backend-bytes", strconv.FormatInt(8<<30, 10))
	cfg, err := env.Start()
	if err != nil {
		// Start may fail after launching etcd and the apiserver (a CRD the apiserver rejects): stop them.
		_ = env.Stop()
		_ = os.RemoveAll(workDir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	// Tests create thousands of objects; the default client limits (QPS 5) would make them wait, not the server.
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	e := &Env{Config: cfg, Client: c, SigningKey: &key.PublicKey, AssetsDir: assets, env: env, workDir: workDir}
	if e.KubeconfigPath, err = e.writeKubeconfig(); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// Restart stops kube-apiserver, leaves it down for downtime, and starts it again on the same address with the same
// certificates, users and etcd, as when a control-plane node restarts. Clients keep working once it is back.
func (e *Env) Restart(downtime time.Duration) error {
	api := e.env.ControlPlane.APIServer
	// With clients watching, kube-apiserver does not finish its graceful shutdown within the stop timeout; envtest
	// then kills it (SIGKILL) and says so. Either way it is down, which is all a restart needs.
	if err := api.Stop(); err != nil && !strings.Contains(err.Error(), "timeout waiting for process") {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	time.Sleep(downtime)
	if err := api.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	return nil
}

// Stop stops the control plane and removes its files.
func (e *Env) Stop() error {
	err := e.env.Stop()
	_ = os.RemoveAll(e.workDir)
	return err
}

func (e *Env) writeKubeconfig() (string, error) {
	user, err := e.env.ControlPlane.AddUser(envtest.User{Name: "acrpull-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.workDir, "kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// AssetsDir finds the directory holding kube-apiserver and etcd: $KUBEBUILDER_ASSETS, or the cache that
// hack/test-env.sh fills.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cache := os.Getenv("ACRPULL_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "acrpull")
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "assets", "*", "kube-apiserver"))
	if len(matches) == 0 {
		return "", fmt.Errorf("no kube-apiserver found: run `make test` or `hack/test-env.sh` (it builds the control plane into %s)", cache)
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

// ModuleRoot is the repository root, found from this source file so tests work from any package directory.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func writePEM(path, blockType string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600)
}

// WholeSuite reports, after testing.M.Run, whether every test of the package ran (no -run, -skip or -short): only then
// can a TestMain check over what the whole suite did (a secrecy scan, say) mean something.
func WholeSuite() bool {
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return !testing.Short()
}
