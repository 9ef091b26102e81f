/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// countsReport is what GET /counts answers: requests per endpoint and answers per endpoint and status.
type countsReport struct {
	Requests map[azurefake.Endpoint]int64            `json:"requests"`
	Statuses map[azurefake.Endpoint]map[string]int64 `json:"statuses"`
}

// adminHandler is the admin API: counters, faults and additive configuration, for scripts driving a running fake.
func adminHandler(cloud *azurefake.Cloud, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		report := countsReport{Requests: cloud.Counts(), Statuses: map[azurefake.Endpoint]map[string]int64{}}
		for ep, byStatus := range cloud.StatusCounts() {
			report.Statuses[ep] = map[string]int64{}
			for status, n := range byStatus {
				report.Statuses[ep][strconv.Itoa(status)] = n
			}
		}
		writeJSON(w, report)
	})
	mux.HandleFunc("DELETE /counts", func(w http.ResponseWriter, _ *http.Request) {
		cloud.ResetCounts()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /config", func(w http.ResponseWriter, r *http.Request) {
		var cfg azurefake.Config
		if err := json.NewDecoder(r.Body).Decode(&cfg); err != nil {
			http.Error(w, "parsing the configuration: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := cloud.ApplyConfig(cfg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		logger.Info("configuration added", "identities", len(cfg.Identities), "registries", len(cfg.Registries),
			"roleAssignments", len(cfg.RoleAssignments), "faults", len(cfg.Faults))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var faults map[azurefake.Endpoint]azurefake.FaultConfig
		if err := json.NewDecoder(r.Body).Decode(&faults); err != nil {
			http.Error(w, "parsing the faults: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := cloud.ApplyConfig(azurefake.Config{Faults: faults}); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for ep := range faults {
			logger.Info("fault set", "endpoint", string(ep))
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, _ *http.Request) {
		cloud.ClearFaults()
		logger.Info("faults cleared")
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		http.Error(w, fmt.Sprintf("encoding: %v", err), http.StatusInternalServerError)
	}
}
