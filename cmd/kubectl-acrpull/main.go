/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command kubectl-acrpull is the kubectl plugin `kubectl acrpull`: `why POD` explains why a pod cannot pull from
// Azure Container Registry and names the one action to take; `status` lists every AcrPullBinding by Ready reason.
// Install it on the PATH (go install github.com/acrpull/acrpull/cmd/kubectl-acrpull@latest) and kubectl finds it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/acrpull/acrpull/internal/pulldiagnosis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	if err := pulldiagnosis.Run(ctx, os.Args[1:], streams); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
