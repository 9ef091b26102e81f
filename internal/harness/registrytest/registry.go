/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package registrytest runs a real OCI registry (Docker distribution) on loopback, behind the fake Azure cloud, that
// accepts only bearer tokens the fake's ACR token endpoint issued; and pushes and pulls images through the fake with
// a real registry client (go-containerregistry), so tests can prove that a pull secret pulls what it should and
// nothing else.
package registrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// AdminClientID is the identity that pushes test images; GrantAdmin lets it push, pull and delete everything.
const AdminClientID = "ad000000-0000-4000-8000-000000000001"

// adminTenantID is the admin identity's tenant, apart from any tenant a test models.
const adminTenantID = "ad000000-0000-4000-8000-0000000000a0"

// Registry is a running registry process serving one fake registry host.
type Registry struct {
	// Host is the public registry host the cloud answers for, e.g. myreg.azurecr.io.
	Host string
	// Upstream is the registry process's own loopback address, which only the cloud's proxy talks to.
	Upstream *url.URL

	cloud     *azurefake.Cloud
	cmd       *exec.Cmd
	dir       string
	exited    chan struct{}
	transport http.RoundTripper
}

// Start starts a registry for host behind cloud for the duration of a test, failing the test if it cannot.
func Start(t testing.TB, cloud *azurefake.Cloud, host string) *Registry {
	t.Helper()
	r, err := StartRegistry(cloud, host)
	if err != nil {
		t.Fatalf("starting the test registry: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// StartRegistry starts the registry binary from the test assets on a free loopback port, with filesystem storage
// in a temporary directory and token authentication trusting only cloud's registry token certificate, and
// registers it with cloud as host. GrantAdmin is applied for host. Close stops it.
func StartRegistry(cloud *azurefake.Cloud, host string) (*Registry, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "acrpull-registry-")
	if err != nil {
		return nil, fmt.Errorf("creating the registry directory: %w", err)
	}
	certFile := filepath.Join(dir, "token-cert.pem")
	if err := os.WriteFile(certFile, cloud.RegistryTokenCertPEM(), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("writing the token certificate: %w", err)
	}
	var r *Registry
	// A free port can be taken between probing and binding; a second try on another port settles that race.
	for attempt := 0; attempt < 3; attempt++ {
		if r, err = launch(bin, dir, certFile, host); err == nil {
			break
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	r.cloud = cloud
	cloud.AddRegistry(azurefake.Registry{Host: host, Upstream: r.Upstream})
	GrantAdmin(cloud, host)
	r.transport = cloud.HTTPClient().Transport
	return r, nil
}

// launch writes the configuration for a fresh port and starts the registry, waiting until it answers.
func launch(bin, dir, certFile, host string) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	configFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configFile, []byte(config(filepath.Join(dir, "data"), addr, host, certFile)), 0o600); err != nil {
		return nil, fmt.Errorf("writing the registry configuration: %w", err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the registry log: %w", err)
	}
	cmd := exec.Command(bin, "serve", configFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Distribution v3 exports traces over OTLP by default; there is nothing to export to.
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	r := &Registry{Host: host, Upstream: &url.URL{Scheme: "http", Host: addr}, cmd: cmd, dir: dir, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(r.exited) }()
	if err := waitReady(r.Upstream, r.exited); err != nil {
		r.stop()
		return nil, fmt.Errorf("the registry did not start: %w; its log: %s", err, tail(logPath))
	}
	return r, nil
}

// config is the registry configuration: filesystem storage, loopback only, and bearer tokens from the fake's ACR
// token endpoint (issuer "Azure Container Registry", audience the registry host) verified against the fake's
// registry token certificate, which the tokens carry in their x5c header.
func config(storage, addr, host, certFile string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: acrpull-test-registry
  draintimeout: 1s
auth:
  token:
    realm: https://%s/oauth2/token
    service: %s
    issuer: %q
    rootcertbundle: %s
`, storage, addr, host, host, azurefake.ACRIssuer, certFile)
}

// Close stops the registry and removes its storage.
func (r *Registry) Close() {
	r.stop()
	_ = os.RemoveAll(r.dir)
}

// stop asks the registry to exit and kills it if it takes more than a few seconds.
func (r *Registry) stop() {
	if r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

// Transport reaches the registry host through the cloud's proxy, trusting its CA, as a real client would.
func (r *Registry) Transport() http.RoundTripper { return r.transport }

// PushRandom pushes a small random image as repo:tag, as the registry administrator.
func (r *Registry) PushRandom(ctx context.Context, repo, tag string) error {
	token, err := AdminToken(r.cloud, r.Host)
	if err != nil {
		return err
	}
	return Push(ctx, r.cloud, r.Host, repo, tag, token)
}

// Pull pulls repo:tag with the credentials a .dockerconfigjson payload holds for the registry host; see Pull.
func (r *Registry) Pull(ctx context.Context, repo, tag string, dockerConfigJSON []byte) error {
	return Pull(ctx, r.transport, r.Host, repo, tag, dockerConfigJSON)
}

// GrantAdmin adds the administrator identity and lets it push, pull and delete every repository of host.
func GrantAdmin(cloud *azurefake.Cloud, host string) {
	cloud.AddIdentity(azurefake.Identity{ClientID: AdminClientID, TenantID: adminTenantID, PrincipalID: "registry-admin"})
	cloud.AddRoleAssignment(AdminClientID, host, []string{"*"}, []string{"pull", "push", "delete"})
}

// AdminToken is a registry refresh token of the administrator for host, a credential that can push.
func AdminToken(cloud *azurefake.Cloud, host string) (string, error) {
	token, err := cloud.IssueRefreshToken(AdminClientID, host)
	if err != nil {
		return "", fmt.Errorf("minting the administrator's token (call GrantAdmin first): %w", err)
	}
	return token, nil
}

// Binary finds the registry binary: $KUBEBUILDER_ASSETS/registry, else the newest cache directory
// hack/test-env.sh fills ($ACRPULL_CACHE or ~/.cache/acrpull, assets/*/registry).
func Binary() (string, error) {
	var looked []string
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		bin := filepath.Join(dir, "registry")
		if isExecutable(bin) {
			return bin, nil
		}
		looked = append(looked, bin)
	}
	cache := os.Getenv("ACRPULL_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "acrpull")
	}
	pattern := filepath.Join(cache, "assets", "*", "registry")
	matches, _ := filepath.Glob(pattern)
	for i := len(matches) - 1; i >= 0; i-- {
		if isExecutable(matches[i]) {
			return matches[i], nil
		}
	}
	looked = append(looked, pattern)
	return "", fmt.Errorf("no registry binary (Docker distribution v3) at %s: run hack/test-env.sh, which builds it into the assets directory",
		strings.Join(looked, " or "))
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls the registry's /v2/ until it answers (401: it wants a token), or the process exits.
func waitReady(upstream *url.URL, exited <-chan struct{}) error {
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("it exited")
		default:
		}
		if resp, err := client.Get(upstream.String() + "/v2/"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				return fmt.Errorf("/v2/ answered %d without a token; token authentication is not on", resp.StatusCode)
			}
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("timed out after 20s")
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	data = bytes.TrimSpace(data)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}
