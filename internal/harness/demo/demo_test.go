/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package demo_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/demo"
)

// The demo is the README's first command: run the same entry point here, with shorter tokens, so it cannot rot.
func TestDemoProvesEveryStep(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	err := demo.Run(ctx, demo.Options{
		Out:                 io.MultiWriter(&out, os.Stderr),
		AccessTokenLifetime: 20 * time.Second,
		WorkDir:             t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"All proofs passed", "PullVerified", "pulled", "denied: ", "refreshed in place",
		"deleted and unreferenced", "Reason:  Healthy", "Reason:  PodCreatedBeforeSecret", "Action:  recreate the pod"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
