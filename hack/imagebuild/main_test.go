/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// The archive and the push carry the same image, named as asked, labelled with the chart's appVersion: a registry
// on loopback serves back by tag the manifest whose digest was printed.
func TestArchiveAndPushCarryTheSameImage(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("building the image needs Debian's dpkg-deb")
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	tag := strings.TrimPrefix(reg.URL, "http://") + "/acrpull:test"
	archive := filepath.Join(t.TempDir(), "image.tar")
	var stdout bytes.Buffer
	// Without -trimpath the binaries reuse what the other tests compiled.
	if err := run(context.Background(), []string{"-out", archive, "-tag", tag, "-push", "-trimpath=false"}, testenv.ModuleRoot(), &stdout); err != nil {
		t.Fatal(err)
	}
	written, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(tag)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	// An archive is read back with Docker's manifest types, so the manifests differ; the configuration, which names
	// every layer's content, is the same bytes.
	wc, _ := written.ConfigName()
	pc, _ := pushed.ConfigName()
	pd, _ := pushed.Digest()
	if wc != pc || !strings.Contains(stdout.String(), "pushed "+ref.Context().String()+"@"+pd.String()) {
		t.Fatalf("archive's config %s, registry's %s (manifest %s); printed:\n%s", wc, pc, pd, stdout.String())
	}
	cfg, err := pushed.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if v := cfg.Config.Labels["org.opencontainers.image.version"]; v != "v0.1.0" {
		t.Errorf("version label %q, want the chart's appVersion v0.1.0", v)
	}
}
