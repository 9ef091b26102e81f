/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command acrpull-mic is the assignment controller of AAD Pod Identity's standard mode (upstream's MIC): it records
// which pods use which identities (AzureAssignedIdentity) and adds the user-assigned identities to the VMs and scale
// sets those pods run on, so that the node agent can get their tokens from the node's instance metadata service. It
// accepts upstream MIC's flags and Azure configuration (azure.json or the environment), so an existing Deployment's
// arguments keep working. Never run it together with upstream's MIC.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/buildinfo"
	"github.com/acrpull/acrpull/internal/mic"
)

// armPollEvery is how often a scale set's identity update is polled until it completes (upstream polled every 5s).
const armPollEvery = 5 * time.Second

const program = "acrpull-mic"

func main() {
	fs := flag.NewFlagSet(program, flag.ExitOnError)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(fs)
	s, err := parseFlags(fs, os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if s.printVersion {
		fmt.Println(buildinfo.String(program))
		return
	}
	s.logging.Apply(fs, &zapOpts)
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	for _, ignored := range s.ignoredFlags {
		log.Info("Ignoring upstream flag " + ignored)
	}
	if err := buildinfo.Register(ctrlmetrics.Registry, program); err != nil {
		log.Error(err, "Failed to register the build_info metric")
		os.Exit(1)
	}

	azure := azauth.NewClient(azauth.Options{UserAgentSuffix: s.userAgent})
	build := mic.ARMClientBuilder(azure, armPollEvery)
	azConfig, err := mic.LoadAzureConfig(s.cloudConfig, os.Getenv)
	if err != nil {
		log.Error(err, "Failed to read the Azure configuration")
		os.Exit(1)
	}
	if s.cloudConfig != "" {
		// The file may change (a rotated secret): the client is rebuilt from it when it does.
		s.opts.ARM, err = mic.NewReloadingARM(s.cloudConfig, os.Getenv, build)
	} else {
		var settings mic.ARMSettings
		if settings, err = azConfig.ARMSettings(os.Getenv); err == nil {
			s.opts.ARM, err = build(settings)
		}
	}
	if err != nil {
		log.Error(err, "Failed to set up the Resource Manager client")
		os.Exit(1)
	}
	// The identity the controller signs in as is the cluster's own (the kubelet's, on AKS): a pod bound to it must not
	// take it off the nodes when the pod goes. Its resource ID is not in azure.json, so it is kept by client ID.
	if id := azConfig.ClusterIdentityClientID(); id != "" &&
		!slices.ContainsFunc(s.opts.Config.Policy.ImmutableClientIDs, func(c string) bool { return strings.EqualFold(c, id) }) {
		s.opts.Config.Policy.ImmutableClientIDs = append(s.opts.Config.Policy.ImmutableClientIDs, id)
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "Failed to load kubeconfig")
		os.Exit(1)
	}
	s.configureClient(cfg)
	mgr, err := mic.NewManager(cfg, s.opts)
	if err != nil {
		log.Error(err, "Failed to build the assignment controller")
		os.Exit(1)
	}
	if s.typeUpgrade {
		// A manager runnable runs once this replica leads, so two replicas never rewrite objects at once.
		upgrade := manager.RunnableFunc(func(ctx context.Context) error {
			l := ctrl.Log.WithName("type-upgrade")
			res, err := mic.UpgradeTypes(ctx, mgr.GetAPIReader(), mgr.GetClient(), s.namespace, version())
			switch {
			case err != nil:
				// Assignment does not depend on it; the key stays unrecorded, so the next start tries again.
				l.Error(err, "Type upgrade failed")
			case res.Skipped:
				l.Info("Type upgrade already recorded", "configMap", s.namespace+"/"+mic.TypeUpgradeConfigMap)
			default:
				l.Info("Type upgrade done", "rewritten", res.Rewritten, "configMap", s.namespace+"/"+mic.TypeUpgradeConfigMap)
			}
			return nil
		})
		if err := mgr.Add(upgrade); err != nil {
			log.Error(err, "Failed to add the type upgrade")
			os.Exit(1)
		}
	}
	go func() {
		<-mgr.Elected()
		log.Info("Elected leader: assigning identities", "lease", s.opts.LeaderElectionNamespace+"/"+mic.LeaderElectionID)
	}()
	log.Info("Starting assignment controller", "version", buildinfo.Version(), "leaderElection", s.opts.LeaderElection, "forceNamespaced", s.opts.Config.ForceNamespaced,
		"immutableClientIDs", s.opts.Config.Policy.ImmutableClientIDs)
	// Losing the lease stops the manager with an error: exit, as upstream did, and let the pod restart as a follower.
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Assignment controller stopped")
		os.Exit(1)
	}
}

// version is what the type upgrade records, as upstream recorded its MIC version.
func version() string {
	return program + " " + buildinfo.Version()
}
