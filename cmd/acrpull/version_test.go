/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// --version prints the version linked in at build (as the Makefile and the image build link it) and exits 0, before
// any flag is checked or a cluster is needed.
func TestVersionFlag(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "acrpull")
	build := exec.Command("go", "build", "-ldflags=-X github.com/acrpull/acrpull/internal/buildinfo.version=v0.0.0-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version", "--ttl-rotation-fraction=0").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if want := "acrpull v0.0.0-test " + runtime.Version() + "\n"; string(out) != want {
		t.Errorf("--version printed %q, want %q", out, want)
	}
}
