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
// Usage: go run ./hack/imagebuild [-out bin/acrpull-image.tar] [-tag REF] [-push] [-trimpath=false]   (`make image`)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

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
	if err := run(ctx, os.Args[1:], ".", os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

// run builds the image of the module at root as args say, reporting what it wrote and pushed to stdout.
func run(ctx context.Context, args []string, root string, stdout io.Writer) error {
	chart, err := os.ReadFile(filepath.Join(root, "config/helm/Chart.yaml"))
	if err != nil {
		return fmt.Errorf("run from the module root: %w", err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil {
		return err
	}
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	out := fs.String("out", "bin/acrpull-image.tar", "Image archive to write (empty: none).")
	tag := fs.String("tag", "ghcr.io/acrpull/acrpull:"+meta.AppVersion, "The image's name in the archive, and where -push sends it.")
	push := fs.Bool("push", false, "Push the image to -tag.")
	trimpath := fs.Bool("trimpath", true, "Build the binaries without the build machine's paths (release builds).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ref, err := name.ParseReference(*tag)
	if err != nil {
		return err
	}

	img, err := image.Build(ctx, image.Options{ModuleRoot: root, Version: meta.AppVersion, Trimpath: *trimpath, Log: os.Stderr})
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		if err := tarball.WriteToFile(*out, ref, img); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", *out, ref, digest)
	}
	if *push {
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", ref.Context(), digest)
	}
	return nil
}
