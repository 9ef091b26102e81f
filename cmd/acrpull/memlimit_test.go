/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// The container's limit becomes the collector's soft limit at nine tenths; without a container limit there is none;
// an explicit GOMEMLIMIT is the operator's and is left alone.
func TestMemoryLimitIsNineTenthsOfTheContainers(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	for _, env := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
		t.Setenv(env, "") // restored after the test
		os.Unsetenv(env)
	}

	container := uint64(512 << 20)
	if _, err := setMemoryLimit(memlimit.Limit(container)); err != nil {
		t.Fatal(err)
	}
	if got, want := debug.SetMemoryLimit(-1), int64(float64(container)*0.9); got != want {
		t.Errorf("with a 512Mi container limit the Go limit is %d, want %d", got, want)
	}

	noLimit := func() (uint64, error) { return 0, memlimit.ErrNoLimit }
	if _, err := setMemoryLimit(noLimit); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("without a container limit the Go limit is %d, want none (%d)", got, int64(math.MaxInt64))
	}

	debug.SetMemoryLimit(300 << 20)
	t.Setenv("GOMEMLIMIT", "300MiB")
	if _, err := setMemoryLimit(memlimit.Limit(512 << 20)); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("an explicit GOMEMLIMIT was replaced: %d", got)
	}
}
