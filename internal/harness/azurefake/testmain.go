/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"fmt"
	"os"
	"testing"
)

// RunTests is the TestMain of a package whose tests sign in to a fake cloud of their own and need nothing else: it
// starts one into *cloud, lets setup add the identities and credentials the tests sign in with, runs the tests and
// closes the cloud. It returns the exit code for os.Exit; a cloud that does not start, or a setup that fails, fails
// the package.
func RunTests(m *testing.M, cloud **Cloud, setup func(*Cloud) error) int {
	c, err := New(Options{})
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	*cloud = c
	if err := setup(c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// StartForTest starts a fake cloud of the test's own, closed when the test ends; a cloud that does not start fails
// the test.
func StartForTest(t testing.TB) *Cloud {
	t.Helper()
	c, err := New(Options{})
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		t.Fatalf("starting the fake Azure cloud: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
