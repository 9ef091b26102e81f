/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package image_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/acrpull/acrpull/internal/harness/image"
	"github.com/acrpull/acrpull/internal/harness/netnstest"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/imdsredirect"
)

// The image is built as `make image` builds it, written as an archive and read back, and its filesystem unpacked;
// its programs then run from that filesystem (chroot), which is what a container runtime would give them, without
// one: the binaries as the nonroot user, the node agent's iptables of both backends, and the redirect installed by
// the agent's own code through the image's iptables in a test network namespace.
func TestImageRunsItsPrograms(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running the image's programs needs root (chroot)")
	}
	img, err := image.Build(context.Background(), image.Options{ModuleRoot: testenv.ModuleRoot(), Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.tar")
	ref := name.MustParseReference("ghcr.io/acrpull/acrpull:test")
	if err := tarball.WriteToFile(archive, ref, img); err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(loaded); err != nil {
		t.Fatalf("the archive's image is not consistent: %v", err)
	}
	root := t.TempDir()
	if err := image.Unpack(context.Background(), loaded, root); err != nil {
		t.Fatal(err)
	}

	t.Run("config", func(t *testing.T) {
		cfg, err := loaded.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || cfg.Config.User != "65532:65532" ||
			!slices.Equal(cfg.Config.Entrypoint, []string{"/acrpull"}) || cfg.Config.Labels["org.opencontainers.image.version"] != "v0.0.0-test" {
			t.Fatalf("config %+v", cfg.Config)
		}
		passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
		if err != nil || !strings.Contains(string(passwd), "nonroot:x:65532:65532:") {
			t.Fatalf("/etc/passwd: %q %v", passwd, err)
		}
	})

	t.Run("binaries run as the nonroot user", func(t *testing.T) {
		for _, bin := range image.Binaries {
			out, err := exec.Command("chroot", "--userspec=65532:65532", root, "/"+bin, "-help").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Usage of "+bin) {
				t.Errorf("/%s -help: %v\n%s", bin, err, out)
			}
		}
	})

	t.Run("programs know the image's version", func(t *testing.T) {
		for _, bin := range []string{"acrpull", "acrpull-nmi", "acrpull-mic"} {
			out, err := exec.Command("chroot", "--userspec=65532:65532", root, "/"+bin, "--version").CombinedOutput()
			if want := bin + " v0.0.0-test "; err != nil || !strings.HasPrefix(string(out), want) {
				t.Errorf("/%s --version: %v %q, want %q...", bin, err, out, want)
			}
		}
	})

	t.Run("the node agent's tools load their libraries", func(t *testing.T) {
		for tool, want := range map[string]string{"iptables": "(nf_tables)", "iptables-nft": "(nf_tables)",
			"iptables-legacy": "(legacy)", "iptables-nft-save": "iptables", "conntrack": "conntrack v"} {
			out, err := exec.Command("chroot", root, tool, "--version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), want) {
				t.Errorf("%s --version: %v\n%s", tool, err, out)
			}
		}
	})

	t.Run("CA certificates", func(t *testing.T) {
		pem, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) || strings.Count(string(pem), "BEGIN CERTIFICATE") < 100 {
			t.Fatalf("the bundle holds %d certificates", strings.Count(string(pem), "BEGIN CERTIFICATE"))
		}
	})

	// The agent's redirect code, given the image's iptables of each backend (run inside a fresh node namespace),
	// installs upstream's chain; the image's own iptables-save shows it.
	for _, backend := range []string{imdsredirect.BackendNFT, imdsredirect.BackendLegacy} {
		t.Run("redirect through the image's iptables-"+backend, func(t *testing.T) {
			node := netnstest.NewNode(t)
			iptables := chrootWrapper(t, node, root, "iptables-"+backend)
			rules := &imdsredirect.Rules{IPTablesPath: iptables}
			if _, err := rules.Ensure(); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(chrootWrapper(t, node, root, "iptables-"+backend+"-save"), "-t", "nat").CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, want := range []string{"-A PREROUTING -j aad-metadata",
				"-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579"} {
				if !strings.Contains(string(out), want) {
					t.Fatalf("the image's iptables-%s-save lacks %q:\n%s", backend, want, out)
				}
			}
		})
	}
}

// chrootWrapper writes a script that runs the image's program inside the node namespace.
func chrootWrapper(t *testing.T, node *netnstest.Node, root, program string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), program)
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s chroot %s %s \"$@\"\n", node.Name(), root, program)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
