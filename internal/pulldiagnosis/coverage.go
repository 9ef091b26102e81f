/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package pulldiagnosis

import (
	"context"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	k8skeychain "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	corev1 "k8s.io/api/core/v1"
)

// imageRef is an image as kubelet looks up its credentials.
type imageRef struct {
	// Image is the reference as the pod spec writes it.
	Image string
	// Repository is what kubelet hands its keyring: the normalized name without tag or digest
	// (docker.io/library/nginx for "nginx"), as kubelet's parsers.ParseImageName computes it with the same library.
	Repository string
	// Registry is the repository's host (and port).
	Registry string
	// Path is the repository inside the registry, which an ACR token's scope must name.
	Path string
}

// parseImage normalizes an image reference the way kubelet does before it looks up pull credentials.
func parseImage(image string) (imageRef, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return imageRef{Image: image}, fmt.Errorf("image %q is not a valid reference: %w", image, err)
	}
	return imageRef{Image: image, Repository: named.Name(), Registry: reference.Domain(named), Path: reference.Path(named)}, nil
}

// lookupTarget hands kubelet's keyring the repository string it matches credentials against.
type lookupTarget string

func (t lookupTarget) String() string { return string(t) }

func (t lookupTarget) RegistryStr() string { return strings.SplitN(string(t), "/", 2)[0] }

// secretCovers reports whether kubelet would send the secret's credentials when pulling from repository. The matching
// is kubelet's keyring (scheme stripped, /v1/ and /v2/ ignored, host globs, equal ports, path prefixes) as
// go-containerregistry carries it, so that the answer is kubelet's and not an approximation of it. Only the secret's
// registry keys decide; its credentials are never read out.
func secretCovers(secret *corev1.Secret, repository string) (bool, error) {
	keyring, err := k8skeychain.NewFromPullSecrets(context.Background(), []corev1.Secret{*secret})
	if err != nil {
		return false, fmt.Errorf("secret %s does not hold a docker config", secret.Name)
	}
	auth, err := keyring.Resolve(lookupTarget(repository))
	if err != nil {
		return false, fmt.Errorf("secret %s: %w", secret.Name, err)
	}
	if auth == authn.Anonymous && strings.HasPrefix(repository, dockerHub+"/") {
		// kubelet falls back to credentials for Docker Hub's old index host for images of the default registry; the
		// library's copy of the keyring leaves that out, so ask it about the same repository under that host.
		auth, err = keyring.Resolve(lookupTarget(dockerHubIndex + strings.TrimPrefix(repository, dockerHub)))
		if err != nil {
			return false, fmt.Errorf("secret %s: %w", secret.Name, err)
		}
	}
	return auth != authn.Anonymous, nil
}

// Docker Hub's registry name in normalized references, and the host its credentials are often filed under.
const (
	dockerHub      = "docker.io"
	dockerHubIndex = "index.docker.io"
)

// scopeAllowsPull reports whether an ACR token scope ("repository:<name>:<action>[,<action>] ...") lets its holder pull
// path. An empty scope (v1beta1 without one) is the registry-wide default, so it allows everything.
func scopeAllowsPull(scope, path string) bool {
	if strings.TrimSpace(scope) == "" {
		return true
	}
	for _, entry := range strings.Fields(scope) {
		parts := strings.Split(entry, ":")
		if len(parts) != 3 || parts[0] != "repository" || parts[1] != path {
			continue
		}
		for _, action := range strings.Split(parts[2], ",") {
			if action == "pull" {
				return true
			}
		}
	}
	return false
}
