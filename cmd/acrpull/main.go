/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command acrpull runs the AcrPullBinding controller manager.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/acrpull/acrpull/internal/buildinfo"
	"github.com/acrpull/acrpull/internal/manager"
)

const program = "acrpull"

func main() {
	fs := flag.NewFlagSet(program, flag.ExitOnError)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(fs)
	config.RegisterFlags(fs) // --kubeconfig, as every controller-runtime manager offers
	printVersion := fs.Bool("version", false, "Print the version and exit.")
	opts, kube, err := parseFlags(fs, os.Args[1:], os.Getenv)
	if *printVersion {
		fmt.Println(buildinfo.String(program))
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if err := buildinfo.Register(ctrlmetrics.Registry, program); err != nil {
		log.Error(err, "Failed to register the build_info metric")
		os.Exit(1)
	}

	if limit, err := setMemoryLimit(memlimit.FromCgroup); err != nil {
		log.Info("No Go memory limit from the container's", "reason", err.Error())
	} else if limit < math.MaxInt64 {
		log.Info("Go memory limit", "bytes", limit)
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "Failed to load kubeconfig")
		os.Exit(1)
	}
	kube.apply(cfg)
	mgr, err := manager.New(cfg, opts)
	if err != nil {
		log.Error(err, "Failed to build manager")
		os.Exit(1)
	}
	go func() {
		<-mgr.Elected()
		log.Info("Elected leader: reconciling", "lease", manager.LeaderElectionID)
	}()
	log.Info("Starting manager", "version", buildinfo.Version(), "workers", opts.Workers, "leaderElection", opts.LeaderElection)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}
