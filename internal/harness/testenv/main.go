/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package testenv

import (
	"fmt"
	"os"
	"testing"
)

// Main is the TestMain of a package whose tests need a control plane and nothing else: it starts one into *env, runs
// the tests, stops it and exits with the tests' code. A control plane that does not start fails the package.
func Main(m *testing.M, env **Env) {
	var err error
	if *env, err = Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = (*env).Stop()
	os.Exit(code)
}
