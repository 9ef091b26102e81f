/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command acrpull-nmi is the node agent for the AAD Pod Identity API. Run it on every node with hostNetwork: it
// redirects pods' instance metadata traffic to itself (nat chain aad-metadata) and serves pods tokens for their
// bound identities. It accepts upstream NMI's flags, so an existing DaemonSet's arguments keep working.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/go-logr/logr"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/acrpull/acrpull/internal/buildinfo"
	"github.com/acrpull/acrpull/internal/imdsredirect"
	"github.com/acrpull/acrpull/internal/nmi"
)

const program = "acrpull-nmi"

func main() {
	fs := flag.NewFlagSet(program, flag.ExitOnError)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(fs)
	config.RegisterFlags(fs)
	f, err := parseFlags(fs, os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if f.printVersion {
		fmt.Println(buildinfo.String(program))
		return
	}
	f.logging.Apply(fs, &zapOpts)
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	for _, ignored := range f.ignored {
		log.Info("Ignoring upstream flag " + ignored)
	}
	if ns := f.agent.Config.MICNamespace; ns != "" {
		log.Info("Pods controlled by a ReplicaSet mic-* get the node's identities from its IMDS (--MICNamespace)", "namespace", ns)
	}
	if err := buildinfo.Register(ctrlmetrics.Registry, program); err != nil {
		log.Error(err, "Failed to register the build_info metric")
		os.Exit(1)
	}

	if !f.allowKubenet {
		evidence, err := kubenetEvidence(f.kubeletConfig, f.cniConfigDir)
		if err != nil {
			log.Error(err, "Failed to tell whether this node uses kubenet; set --allow-network-plugin-kubenet=true to skip the check")
			os.Exit(1)
		}
		if evidence != "" {
			log.Error(nil, "Refusing to run on a kubenet node: its pods share a bridge, where a pod with NET_RAW can take "+
				"another pod's address and so its tokens. Deny NET_RAW to pods (docs/pod-identity.md), then set "+
				"--allow-network-plugin-kubenet=true", "evidence", evidence)
			os.Exit(1)
		}
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "Failed to load kubeconfig")
		os.Exit(1)
	}
	mgr, err := nmi.New(cfg, f.agent)
	if err != nil {
		log.Error(err, "Failed to build the node agent")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	redirectDone := make(chan struct{})
	if f.redirect {
		rules := f.rules
		// A redirect to a loopback address needs route_localnet, which exposes the node's loopback to its pods and
		// neighbours unless the guard chain drops what DNAT did not send there.
		toLoopback := net.ParseIP(rules.TargetIP).IsLoopback()
		rules.GuardLoopback = toLoopback
		program, why, err := imdsredirect.ChooseIPTables(ctx, f.iptablesMode, imdsredirect.RunHere)
		if err != nil {
			log.Error(err, "Failed to choose the iptables backend; set --iptables-mode")
			os.Exit(1)
		}
		rules.IPTablesPath = program
		rules.Log = log.WithName("redirect")
		log.Info("Writing the redirect with "+program, "because", why)
		if f.flushConntrack {
			if err := rules.FlushConntrack(); err != nil {
				log.Error(err, "Failed to flush conntrack entries to the metadata address")
			}
		}
		if _, err := rules.Ensure(); err != nil {
			log.Error(err, "Failed to install the redirect", "chain", rules.Chain)
			os.Exit(1)
		}
		// restoreRouteLocalnet, when set, turns route_localnet back off at exit, as the agent found it: the loopback
		// guard that made it safe goes with the redirect, so it goes first.
		var restoreRouteLocalnet func()
		if toLoopback {
			restoreRouteLocalnet = setUpRouteLocalnet(log, mgr, imdsredirect.ProcSys{}, f.routeLocalnet)
		}
		redirectCtx, stopRedirect := context.WithCancel(context.Background())
		go func() {
			<-ctx.Done()
			if restoreRouteLocalnet != nil {
				restoreRouteLocalnet()
			}
			stopRedirect()
		}()
		log.Info("Redirecting instance metadata traffic", "chain", rules.Chain, "to", f.agent.ListenAddr)
		go func() {
			defer close(redirectDone)
			// Run re-asserts the chain until the signal, then deletes it, so pods reach the node's metadata service
			// directly again once the agent is gone.
			if err := rules.Run(redirectCtx, f.redirectInterval, func() { log.Info("Repaired the redirect chain", "chain", rules.Chain) }); err != nil {
				log.Error(err, "Failed to remove the redirect chain", "chain", rules.Chain)
			}
		}()
	} else {
		close(redirectDone)
	}
	log.Info("Starting node agent", "version", buildinfo.Version(), "node", f.agent.NodeName, "tokenSource", f.agent.Type0Source)
	err = mgr.Start(ctx)
	<-redirectDone
	if err != nil && ctx.Err() == nil {
		log.Error(err, "Node agent stopped")
		os.Exit(1)
	}
	if f.redirect {
		log.Info("Removed the redirect chain", "chain", f.rules.Chain)
	}
}

// setUpRouteLocalnet makes sure the kernel delivers pods' requests DNATed to the loopback listener: it sets
// route_localnet when asked to, reads it back, and adds a readiness check that reads it on every probe, so an agent
// whose redirect cannot deliver (an unprivileged container's /proc/sys is read-only) is not ready, and says why,
// instead of silently black-holing its node's pods. It returns what restores route_localnet at exit when the agent
// turned it on, or nil.
func setUpRouteLocalnet(log logr.Logger, mgr *nmi.Agent, sysctls imdsredirect.Sysctls, set bool) func() {
	var restore func()
	before, _ := sysctls.Read(imdsredirect.RouteLocalnet)
	check := imdsredirect.RouteLocalnetOn(sysctls)
	if set {
		check = imdsredirect.EnableRouteLocalnet(sysctls)
	}
	if check != nil {
		log.Error(check, "The redirect cannot deliver; the agent stays unready until it can")
	} else if set && before == "0" {
		restore = func() {
			if err := sysctls.Write(imdsredirect.RouteLocalnet, "0"); err != nil {
				log.Error(err, "Failed to turn route_localnet back off", "sysctl", imdsredirect.RouteLocalnet)
			}
		}
	}
	if err := mgr.AddReadyzCheck("route-localnet", func(*http.Request) error {
		return imdsredirect.RouteLocalnetOn(sysctls)
	}); err != nil {
		log.Error(err, "Failed to add the route_localnet readiness check")
		os.Exit(1)
	}
	return restore
}
