//go:build tools

/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package tools pins the code generators and the linter in go.mod, so `go run` uses the same versions everywhere.
package tools

import (
	_ "honnef.co/go/tools/cmd/staticcheck"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
