/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command imagebuild builds acrpull's container image (internal/harness/image) without a container engine and writes it as
// an image archive that `docker load`, `kind load image-archive` and `crane push` take, or pushes it to a registry
// with the credentials of ~/.docker/config.json.
//
// The default tag is the chart's default image (repository ghcr.io/acrpull/acrpull, tag = the chart's appVersion), so
// an archive loaded into a cluster's nodes serves `helm install` unchanged.
//
// It needs Go and HTTPS access to a Debian mirror (Debian's own by default; -debian-mirror and -security-mirror, or
// $ACRPULL_DEBIAN_MIRROR and $ACRPULL_DEBIAN_SECURITY_MIRROR, name another), on any host: -arch builds for another
// architecture.
//
// Usage: go run ./hack/imagebuild [-out bin/acrpull-image.tar] [-tag REF] [-push] [-arch GOARCH] [-version V]
// [-debian-mirror URL] [-security-mirror URL] [-trimpath=false]   (`make image`)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/yaml"

	"github.com/acrpull/acrpull/internal/harness/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], ".", os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

// job is what the command line asks for.
type job struct {
	out, tag string
	push     bool
	image    image.Options
}

// parse reads the command line; the defaults name the chart of the module at root.
func parse(args []string, root string) (*job, error) {
	chart, err := os.ReadFile(filepath.Join(root, "config/helm/Chart.yaml"))
	if err != nil {
		return nil, fmt.Errorf("run from the module root: %w", err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil {
		return nil, err
	}
	j := &job{image: image.Options{ModuleRoot: root, Log: os.Stderr}}
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fs.StringVar(&j.out, "out", "bin/acrpull-image.tar", "Image archive to write (empty: none).")
	fs.StringVar(&j.tag, "tag", "ghcr.io/acrpull/acrpull:"+meta.AppVersion, "The image's name in the archive, and where -push sends it.")
	fs.BoolVar(&j.push, "push", false, "Push the image to -tag.")
	fs.BoolVar(&j.image.Trimpath, "trimpath", true, "Build the binaries without the build machine's paths (release builds).")
	fs.StringVar(&j.image.Arch, "arch", runtime.GOARCH, "The image's architecture, as GOARCH names it (amd64, arm64, ...).")
	fs.StringVar(&j.image.Version, "version", meta.AppVersion, "The version the programs report and the image is labelled with.")
	fs.StringVar(&j.image.DebianMirror, "debian-mirror", "",
		"Debian mirror (default $ACRPULL_DEBIAN_MIRROR, else "+image.DefaultDebianMirror+").")
	fs.StringVar(&j.image.SecurityMirror, "security-mirror", "",
		"Debian security mirror (default $ACRPULL_DEBIAN_SECURITY_MIRROR, else "+image.DefaultSecurityMirror+").")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return j, nil
}

// run builds the image of the module at root as args say, reporting what it wrote and pushed to stdout.
func run(ctx context.Context, args []string, root string, stdout io.Writer) error {
	j, err := parse(args, root)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(j.tag)
	if err != nil {
		return err
	}

	img, err := image.Build(ctx, j.image)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if j.out != "" {
		if err := os.MkdirAll(filepath.Dir(j.out), 0o755); err != nil {
			return err
		}
		if err := tarball.WriteToFile(j.out, ref, img); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", j.out, ref, digest)
	}
	if j.push {
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", ref.Context(), digest)
	}
	return nil
}
