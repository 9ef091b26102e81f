/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package registrytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/acrpull/acrpull/internal/dockerconfig"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// Push pushes a small random image (two 512-byte layers) as host/repo:tag through cloud's proxy, authenticating
// with token (an ACR refresh or access token, e.g. AdminToken's) as a Docker client does: user name the null GUID,
// token as password, traded at the registry's token endpoint for a push-scoped bearer token.
func Push(ctx context.Context, cloud *azurefake.Cloud, host, repo, tag, token string) error {
	ref, err := name.NewTag(host + "/" + repo + ":" + tag)
	if err != nil {
		return fmt.Errorf("image reference: %w", err)
	}
	img, err := random.Image(512, 2)
	if err != nil {
		return fmt.Errorf("making a random image: %w", err)
	}
	auth := &authn.Basic{Username: dockerconfig.TokenUsername, Password: token}
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithTransport(cloud.HTTPClient().Transport), remote.WithAuth(auth)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// Pull pulls host/repo:tag (manifest, config and every layer) over transport with the credentials a
// .dockerconfigjson payload holds for host, as kubelet would. When the registry refuses, the error wraps its answer:
// StatusCode tells 401/403 apart from other failures.
func Pull(ctx context.Context, rt http.RoundTripper, host, repo, tag string, dockerConfigJSON []byte) error {
	entry, err := dockerconfig.Lookup(dockerConfigJSON, host)
	if err != nil {
		return fmt.Errorf("reading the pull secret: %w", err)
	}
	ref, err := name.NewTag(host + "/" + repo + ":" + tag)
	if err != nil {
		return fmt.Errorf("image reference: %w", err)
	}
	auth := &authn.Basic{Username: entry.Username, Password: entry.Password}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(rt), remote.WithAuth(auth))
	if err != nil {
		return fmt.Errorf("pulling %s: %w", ref, err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return fmt.Errorf("pulling the config of %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing the layers of %s: %w", ref, err)
	}
	for _, layer := range layers {
		if err := drain(layer.Compressed); err != nil {
			return fmt.Errorf("pulling a layer of %s: %w", ref, err)
		}
	}
	return nil
}

func drain(open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// StatusCode is the HTTP status of the registry's (or its token endpoint's) refusal in a Push or Pull error, 0 when
// the error is not an HTTP answer.
func StatusCode(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

// IsDenied reports whether the registry refused the credentials (401 or 403), as opposed to any other failure.
func IsDenied(err error) bool {
	code := StatusCode(err)
	return code == http.StatusUnauthorized || code == http.StatusForbidden
}
