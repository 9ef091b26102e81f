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

	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// Active is upstream's /healthz body.
const Active = "Active"

// Handler serves /healthz (Active when every liveness check passes), /healthz/<check>, and /readyz and
// /readyz/<check> as controller-runtime's probe server does. It reads the maps on each request, so checks added to
// them later are served. internal/processmanager serves it as the manager's probe server (processmanager's
// Options.ProbeHandler).
func Handler(live, ready map[string]healthz.Checker) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		var failed []string
		for _, name := range slices.Sorted(maps.Keys(live)) {
			if err := live[name](r); err != nil {
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
	mux.Handle("/healthz/", http.StripPrefix("/healthz", &healthz.Handler{Checks: live}))
	readyz := &healthz.Handler{Checks: ready}
	mux.Handle("/readyz", http.StripPrefix("/readyz", readyz))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", readyz))
	return mux
}
