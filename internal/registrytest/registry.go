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
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/acrpull/acrpull/internal/azurefake"
	"github.com/acrpull/acrpull/internal/dockerconfig"
	"github.com/acrpull/acrpull/internal/testenv"
)

// adminClientID is the identity that pushes test images; it may push and pull everything.
const adminClientID = "ad000000-0000-4000-8000-000000000001"

// Registry is a running registry process serving one fake registry host.
type Registry struct {
	Host      string
	cloud     *azurefake.Cloud
	cmd       *exec.Cmd
	dir       string
	exited    chan struct{}
	transport http.RoundTripper
}

// StartRegistry starts the registry binary from the test assets and registers it with cloud as host.
func StartRegistry(cloud *azurefake.Cloud, host string) (*Registry, error) {
	assets, err := testenv.AssetsDir()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(assets, "registry")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no registry binary in %s: run hack/test-env.sh", assets)
	}
	dir, err := os.MkdirTemp("", "acrpull-registry-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	certFile := filepath.Join(dir, "token-cert.pem")
	if err := os.WriteFile(certFile, cloud.RegistryTokenCertPEM(), 0o644); err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
  secret: acrpull-test-secret
auth:
  token:
    realm: https://%s/oauth2/token
    service: %s
    issuer: %q
    rootcertbundle: %s
`, filepath.Join(dir, "data"), port, host, host, azurefake.ACRIssuer, certFile)
	configFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", configFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &Registry{Host: host, cloud: cloud, cmd: cmd, dir: dir, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(r.exited) }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListening(addr, r.exited); err != nil {
		r.Close()
		return nil, fmt.Errorf("registry did not start (log in %s): %w", dir, err)
	}
	cloud.AddRegistry(azurefake.Registry{Host: host, Upstream: &url.URL{Scheme: "http", Host: addr}})
	cloud.AddIdentity(azurefake.Identity{ClientID: adminClientID, TenantID: "registry-admins"})
	cloud.AddRoleAssignment(adminClientID, host, []string{"*"}, []string{"pull", "push", "delete"})
	r.transport = cloud.HTTPClient().Transport
	return r, nil
}

// Close stops the registry and removes its storage.
func (r *Registry) Close() {
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	_ = os.RemoveAll(r.dir)
}

// PushRandom pushes a small random image as repo:tag, as the registry administrator.
func (r *Registry) PushRandom(ctx context.Context, repo, tag string) error {
	rt, err := r.cloud.IssueRefreshToken(adminClientID, r.Host)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		return err
	}
	img, err := random.Image(512, 2)
	if err != nil {
		return err
	}
	return remote.Write(ref, img, remote.WithContext(ctx), remote.WithTransport(r.transport),
		remote.WithAuth(&authn.Basic{Username: dockerconfig.TokenUsername, Password: rt}))
}

// Pull pulls repo:tag (manifest, config and every layer) with the credentials a .dockerconfigjson payload holds for
// the registry host, as kubelet would. The error is the registry's answer when it refuses.
func (r *Registry) Pull(ctx context.Context, repo, tag string, dockerConfigJSON []byte) error {
	entry, err := dockerconfig.Lookup(dockerConfigJSON, r.Host)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(r.Host + "/" + repo + ":" + tag)
	if err != nil {
		return err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(r.transport),
		remote.WithAuth(&authn.Basic{Username: entry.Username, Password: entry.Password}))
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if _, err := img.ConfigFile(); err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("registry exited")
		default:
		}
		if conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = conn.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("timed out")
}
