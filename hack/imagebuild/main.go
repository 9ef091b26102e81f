/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command imagebuild builds acrpull's container image (internal/image) without a container engine and writes it as
// an image archive that `docker load`, `kind load image-archive` and `crane push` take, or pushes it to a registry
// with the credentials of ~/.docker/config.json.
//
// The default tag is the chart's default image (repository ghcr.io/acrpull/acrpull, tag = the chart's appVersion), so
// an archive loaded into a cluster's nodes serves `helm install` unchanged.
//
// Usage: go run ./hack/imagebuild [-out bin/acrpull-image.tar] [-tag REF] [-push]   (`make image` runs it)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/yaml"

	"github.com/acrpull/acrpull/internal/image"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run() error {
	chart, err := os.ReadFile("config/helm/Chart.yaml")
	if err != nil {
		return fmt.Errorf("run from the module root: %w", err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil {
		return err
	}
	out := flag.String("out", "bin/acrpull-image.tar", "Image archive to write (empty: none).")
	tag := flag.String("tag", "ghcr.io/acrpull/acrpull:"+meta.AppVersion, "The image's name in the archive, and where -push sends it.")
	push := flag.Bool("push", false, "Push the image to -tag.")
	flag.Parse()
	ref, err := name.ParseReference(*tag)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	img, err := image.Build(ctx, image.Options{ModuleRoot: ".", Version: meta.AppVersion, Trimpath: true, Log: os.Stderr})
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
		fmt.Printf("wrote %s (%s, %s)\n", *out, ref, digest)
	}
	if *push {
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return err
		}
		fmt.Printf("pushed %s@%s\n", ref.Context(), digest)
	}
	return nil
}
