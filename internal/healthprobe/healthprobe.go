/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package healthprobe serves the pod identity programs' /healthz and /readyz the way upstream aad-pod-identity's nmi
// and mic answered /healthz: status 200 with the body "Active", which probes and scripts written for upstream match
// on. Unlike upstream's (200 "Not Active" while starting, and never a failure), the answer is the result of the
// program's liveness checks: a failing check answers 500 "Not Active" and names the check.
package healthprobe

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Active is upstream's /healthz body.
const Active = "Active"

// Checks are a program's liveness (/healthz) and readiness (/readyz) checks by name.
type Checks struct {
	Healthz map[string]healthz.Checker
	Readyz  map[string]healthz.Checker
}

// Handler serves /healthz (Active when every liveness check passes), /healthz/<check>, and /readyz and
// /readyz/<check> as controller-runtime's probe server does.
func (c Checks) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		var failed []string
		for _, name := range slices.Sorted(maps.Keys(c.Healthz)) {
			if err := c.Healthz[name](r); err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			}
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = fmt.Fprintf(w, "Not Active\n%s\n", strings.Join(failed, "\n"))
			return
		}
		_, _ = w.Write([]byte(Active))
	})
	mux.Handle("/healthz/", http.StripPrefix("/healthz", &healthz.Handler{Checks: c.Healthz}))
	ready := &healthz.Handler{Checks: c.Readyz}
	mux.Handle("/readyz", http.StripPrefix("/readyz", ready))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", ready))
	return mux
}

// Serve adds to mgr a server of c's Handler on addr ("" or "0" serves none). It is one of the manager's HTTP servers,
// so it answers from the start, while caches sync and on replicas not leading, as controller-runtime's own probe
// server does (the manager's HealthProbeBindAddress must then be "0").
func Serve(mgr manager.Manager, addr string, c Checks) error {
	if addr == "" || addr == "0" {
		return nil
	}
	return mgr.Add(&manager.Server{
		Name:   "health probe",
		Server: &http.Server{Addr: addr, Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second},
	})
}
