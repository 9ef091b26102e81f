/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command acrpull-demo runs `make demo`: acrpull's main job on this machine, with no cluster and no cloud.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/acrpull/acrpull/internal/harness/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := demo.Run(ctx, demo.Options{
		Out:           os.Stdout,
		Keep:          os.Getenv("DEMO_KEEP") == "1",
		AcrpullBinary: os.Getenv("ACRPULL_BINARY"),
		WorkDir:       os.Getenv("DEMO_DIR"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
