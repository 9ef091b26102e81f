/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package demo runs acrpull's main job end to end on one machine, with no cluster and no cloud: a real
// kube-apiserver and etcd, the fake Azure cloud, a real OCI registry, and the real acrpull binary as a separate
// process configured only through its flags, a kubeconfig and the standard proxy and CA environment. It applies the
// seed examples and proves each credential with real pulls. `make demo` runs it; a test runs it too.
package demo

import (
	"context"

	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/buildinputs"
	"github.com/acrpull/acrpull/internal/harness/registrytest"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// The demo's world.
const (
	registryHost     = "demo.azurecr.io"
	tenantID         = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	identityClientID = "5a1e7c9e-4b8f-4f5e-9a61-0c9e5a3d2b11"
	identityResource = "/subscriptions/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0/resourceGroups/demo/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo-puller"
	permittedRepo    = "hello"
	forbiddenRepo    = "private"
	imageTag         = "v1"
	appNamespace     = "application"
	tokenAudience    = "api://AzureCRTokenExchange"
)

// Options configure a run.
type Options struct {
	// Out receives the progress and the proofs.
	Out io.Writer
	// Keep leaves everything running after the proofs, until ctx ends (DEMO_KEEP=1).
	Keep bool
	// AcrpullBinary is the controller to run; empty builds ./cmd/acrpull.
	AcrpullBinary string
	// AccessTokenLifetime is how long the fake registry's access tokens live, short so a refresh is seen.
	AccessTokenLifetime time.Duration
	// WorkDir holds logs, the kubeconfig and the CA; empty makes a temporary one.
	WorkDir string
}

// Run runs the demo. It returns nil only when every proof passed.
func Run(ctx context.Context, opts Options) (err error) {
	if opts.AccessTokenLifetime == 0 {
		opts.AccessTokenLifetime = 40 * time.Second
	}
	if opts.WorkDir == "" {
		if opts.WorkDir, err = os.MkdirTemp("", "acrpull-demo-"); err != nil {
			return err
		}
	}
	d := &demo{opts: opts, out: opts.Out, start: time.Now()}
	defer d.cleanup()
	defer func() {
		if err != nil {
			fmt.Fprintf(d.out, "\nDEMO FAILED: %v\nlogs: %s (acrpull.log is the controller's)\n", err, opts.WorkDir)
		}
	}()
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"start a real kube-apiserver and etcd", d.startControlPlane},
		{"start the fake Azure cloud and a real OCI registry", d.startCloud},
		{"push two images: " + permittedRepo + " (permitted) and " + forbiddenRepo + " (not)", d.pushImages},
		{"start the acrpull controller binary", d.startController},
		{"apply the seed examples (v1beta2 workload identity, v1beta2 managed identity, v1beta1)", d.applyExamples},
		{"wait for every binding to be Ready (and each scoped one Verified by the registry)", d.waitReady},
		{"show the bindings and secrets", d.show},
		{"prove each secret with real pulls", d.provePulls},
		{"watch a token refresh in place", d.proveRefresh},
		{"delete a binding and check it cleans up", d.proveDelete},
		{"ask kubectl acrpull why a healthy pod and a broken pod can or cannot pull", d.askPlugin},
	}
	for i, s := range steps {
		fmt.Fprintf(d.out, "[%d/%d] %s ...\n", i+1, len(steps), s.name)
		t0 := time.Now()
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, s.name, err)
		}
		fmt.Fprintf(d.out, "      done in %s\n", time.Since(t0).Round(100*time.Millisecond))
	}
	fmt.Fprintf(d.out, "\nAll proofs passed in %s.\n", time.Since(d.start).Round(time.Second))
	if opts.Keep {
		d.printKeepHelp()
		<-ctx.Done()
	}
	return nil
}

type demo struct {
	opts  Options
	out   io.Writer
	start time.Time

	env        *testenv.Env
	cloud      *azurefake.Cloud
	registry   *registrytest.Registry
	controller *exec.Cmd
	exited     chan error
	caFile     string
}

func (d *demo) cleanup() {
	if d.controller != nil && d.controller.Process != nil {
		_ = d.controller.Process.Signal(os.Interrupt)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			_ = d.controller.Process.Kill()
		}
	}
	if d.registry != nil {
		d.registry.Close()
	}
	if d.cloud != nil {
		d.cloud.Close()
	}
	if d.env != nil {
		_ = d.env.Stop()
	}
}

func (d *demo) startControlPlane(context.Context) error {
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	d.env = env
	return nil
}

func (d *demo) startCloud(context.Context) error {
	cloud, err := azurefake.New(azurefake.Options{})
	if err == nil {
		err = cloud.Start()
	}
	if err != nil {
		return err
	}
	d.cloud = cloud
	d.caFile = filepath.Join(d.opts.WorkDir, "fake-azure-ca.pem")
	if err := os.WriteFile(d.caFile, cloud.CACertPEM(), 0o644); err != nil {
		return err
	}
	if d.registry, err = registrytest.StartRegistry(cloud, registryHost); err != nil {
		return err
	}
	cloud.SetLifetimes(azurefake.Lifetimes{Entra: time.Hour, ACRRefresh: 3 * time.Hour, ACRAccess: d.opts.AccessTokenLifetime})
	cloud.TrustIssuer(testenv.Issuer, d.env.SigningKey)
	// One user-assigned identity: assigned to "this VM" (IMDS), federated with application/puller, allowed to pull
	// one repository only.
	cloud.AddIdentity(azurefake.Identity{ClientID: identityClientID, ResourceID: identityResource, PrincipalID: "demo-puller",
		TenantID: tenantID, AssignedToVM: true})
	cloud.AddFederatedCredential(identityClientID, azurefake.FederatedCredential{Issuer: testenv.Issuer,
		Subject: "system:serviceaccount:" + appNamespace + ":puller", Audiences: []string{tokenAudience}})
	cloud.AddRoleAssignment(identityClientID, registryHost, []string{permittedRepo}, []string{"pull"})
	fmt.Fprintf(d.out, "      fake Azure proxy %s, registry %s behind it\n", cloud.ProxyURL(), registryHost)
	return nil
}

func (d *demo) pushImages(ctx context.Context) error {
	for _, repo := range []string{permittedRepo, forbiddenRepo} {
		if err := d.registry.PushRandom(ctx, repo, imageTag); err != nil {
			return fmt.Errorf("pushing %s: %w", repo, err)
		}
	}
	return nil
}

func (d *demo) startController(ctx context.Context) error {
	bin := d.opts.AcrpullBinary
	if bin == "" {
		bin = filepath.Join(d.opts.WorkDir, "acrpull")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/acrpull")
		build.Dir = testenv.ModuleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building acrpull: %w\n%s", err, out)
		}
		// Run by a test, the demo passes from go test's cache only while what it built is unchanged.
		if err := buildinputs.Record(testenv.ModuleRoot(), "./cmd/acrpull"); err != nil {
			return err
		}
	}
	logPath := filepath.Join(d.opts.WorkDir, "acrpull.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin,
		"--kubeconfig", d.env.KubeconfigPath,
		"--metrics-bind-address", "127.0.0.1:0",
		"--health-probe-bind-address", "127.0.0.1:0",
		"--allowed-acr-server-suffixes", "azurecr.io",
		"--service-account-token-audience", tokenAudience,
		"--zap-log-level", "info",
	)
	// The only way the controller learns about the fake cloud: the standard proxy and CA settings.
	cmd.Env = append(os.Environ(),
		"HTTPS_PROXY="+d.cloud.ProxyURL().String(), "HTTP_PROXY="+d.cloud.ProxyURL().String(),
		"NO_PROXY=127.0.0.1,localhost", "SSL_CERT_FILE="+d.caFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	d.controller = cmd
	d.exited = make(chan error, 1)
	go func() { d.exited <- cmd.Wait(); _ = logFile.Close() }()
	fmt.Fprintf(d.out, "      pid %d, log %s\n", cmd.Process.Pid, logPath)
	return nil
}

// controllerAlive fails fast when the controller process died, instead of waiting out a timeout.
func (d *demo) controllerAlive() error {
	select {
	case err := <-d.exited:
		d.exited <- err
		return fmt.Errorf("the acrpull process exited (%v); see %s", err, filepath.Join(d.opts.WorkDir, "acrpull.log"))
	default:
		return nil
	}
}

func (d *demo) kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(d.env.AssetsDir, "kubectl"), append([]string{"--kubeconfig", d.env.KubeconfigPath}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (d *demo) printKeepHelp() {
	fmt.Fprintf(d.out, `
DEMO_KEEP=1: everything stays up until you press Ctrl-C. Try:
  export KUBECONFIG=%s
  %s get apb -A
  %s get acrpullbindings.msi-acrpull.microsoft.com -A
  %s get secrets -A -l acr.microsoft.com/binding
The controller's log: %s
`, d.env.KubeconfigPath, filepath.Join(d.env.AssetsDir, "kubectl"), filepath.Join(d.env.AssetsDir, "kubectl"),
		filepath.Join(d.env.AssetsDir, "kubectl"), filepath.Join(d.opts.WorkDir, "acrpull.log"))
}
