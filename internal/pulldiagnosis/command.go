/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package pulldiagnosis is the kubectl plugin `kubectl acrpull`: `why POD` tells why a pod cannot pull (its service
// account, the pull secrets it carries, the bindings for its account, which registry each image needs and whether a
// secret covers it under kubelet's rules) and the one action to take; `status` lists every binding by Ready reason
// with the soonest expiry. It only reads from the cluster, with the caller's kubeconfig.
package pulldiagnosis

import (
	"context"
	"fmt"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/acrpull/acrpull/internal/buildinfo"
	"github.com/acrpull/acrpull/internal/scheme"
)

// Program is the plugin's binary name: kubectl finds `kubectl-acrpull` on the PATH and runs it for `kubectl acrpull`.
const Program = "kubectl-acrpull"

// NewCommand is the plugin's root command. The clock decides what "expired" and "in 2h" mean.
func NewCommand(streams genericiooptions.IOStreams, clk clock.PassiveClock) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:           "kubectl acrpull",
		Short:         "Explain why a pod cannot pull from Azure Container Registry, and list AcrPullBindings by status",
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	flags.AddFlags(root.PersistentFlags())

	root.AddCommand(&cobra.Command{
		Use:   "why POD",
		Short: "Say why POD cannot pull its images, and the one action to take",
		Example: `  kubectl acrpull why web-7d9c5b6f4-abcde -n app
  kubectl acrpull why web-7d9c5b6f4-abcde --context prod`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, namespace, err := connect(flags)
			if err != nil {
				return err
			}
			facts, err := readPod(cmd.Context(), c, namespace, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(streams.Out, diagnose(facts, clk.Now()).String())
			return err
		},
	})

	var allNamespaces bool
	status := &cobra.Command{
		Use:   "status",
		Short: "List AcrPullBindings of both API groups by Ready reason, soonest expiry first",
		Example: `  kubectl acrpull status -A
  kubectl acrpull status -n app`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, namespace, err := connect(flags)
			if err != nil {
				return err
			}
			if allNamespaces {
				namespace = ""
			}
			bindings, err := readBindings(cmd.Context(), c, namespace)
			if err != nil {
				return err
			}
			return writeStatus(streams.Out, bindings, clk.Now())
		},
	}
	status.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "list the bindings of every namespace")
	root.AddCommand(status)
	return root
}

// Run runs the plugin with args (without the program name), as main does; the demo calls it too.
func Run(ctx context.Context, args []string, streams genericiooptions.IOStreams) error {
	cmd := NewCommand(streams, clock.RealClock{})
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// connect builds a client from the standard kubeconfig flags and resolves the namespace as kubectl does: -n, else the
// context's namespace, else "default".
func connect(flags *genericclioptions.ConfigFlags) (client.Client, string, error) {
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	namespace, _, err := flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	// The answers are the output; the client's own logging would only add noise to them (and, left unset, makes
	// controller-runtime print a stack trace). logr.Discard is the zero Logger, which the client replaces, so a sink
	// that drops everything stands in.
	quiet := funcr.New(func(string, string) {}, funcr.Options{})
	c, err := client.New(cfg, client.Options{Scheme: scheme.New(), Log: quiet})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, namespace, nil
}
