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
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// The archive and the push carry the same image, named as asked, labelled with the version asked for: a registry
// on loopback serves back by tag the manifest whose digest was printed.
func TestArchiveAndPushCarryTheSameImage(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	tag := strings.TrimPrefix(reg.URL, "http://") + "/acrpull:test"
	archive := filepath.Join(t.TempDir(), "image.tar")
	var stdout bytes.Buffer
	// Without -trimpath the binaries reuse what the other tests compiled; with their version too, the image is the
	// one the image and node agent tests build, built once.
	args := []string{"-out", archive, "-tag", tag, "-push", "-trimpath=false", "-version", "v0.0.0-test"}
	if err := run(context.Background(), args, testenv.ModuleRoot(), &stdout); err != nil {
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
	if v := cfg.Config.Labels["org.opencontainers.image.version"]; v != "v0.0.0-test" {
		t.Errorf("version label %q, want v0.0.0-test", v)
	}
}

// Unless told otherwise, the image is the release build of the chart's appVersion, named as the chart's default
// image, for the build machine's architecture, from Debian's mirrors (or those the environment names).
func TestDefaultsAreTheChartsImage(t *testing.T) {
	j, err := parse(nil, testenv.ModuleRoot())
	if err != nil {
		t.Fatal(err)
	}
	if j.tag != "ghcr.io/acrpull/acrpull:v0.1.0" || j.image.Version != "v0.1.0" || !j.image.Trimpath ||
		j.image.Arch != runtime.GOARCH || j.image.DebianMirror != "" || j.image.SecurityMirror != "" || j.out != "bin/acrpull-image.tar" {
		t.Fatalf("defaults %+v", j)
	}
	j, err = parse([]string{"-arch", "arm64", "-debian-mirror", "https://mirror.example/debian"}, testenv.ModuleRoot())
	if err != nil {
		t.Fatal(err)
	}
	if j.image.Arch != "arm64" || j.image.DebianMirror != "https://mirror.example/debian" {
		t.Fatalf("-arch and -debian-mirror: %+v", j.image)
	}
}
