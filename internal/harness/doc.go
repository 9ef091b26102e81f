/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package harness holds what tests, the demo, the bench and the image build use and no shipped program links: the
// real control plane (testenv), the fake Azure cloud (azurefake), the real OCI registry (registrytest), network
// namespaces (netnstest), the bench and demo drivers and the image builder. hack/verify.sh fails when a program under
// cmd/acrpull* links anything below this folder.
package harness
