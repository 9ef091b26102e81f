/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package pulldiagnosis

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
)

// readyReason is a binding's Ready reason, "NotReported" before the controller has written one.
func readyReason(b bindingFacts) string {
	if b.Ready == nil {
		return "NotReported"
	}
	return b.Ready.Reason
}

// sortForStatus orders bindings as `status` lists them: bindings that are not Ready first, grouped by reason, and
// within a group the soonest expiry first (no expiry last).
func sortForStatus(bindings []bindingFacts) {
	slices.SortStableFunc(bindings, func(a, b bindingFacts) int {
		if c := cmp.Compare(ready(a), ready(b)); c != 0 {
			return c
		}
		if c := cmp.Compare(readyReason(a), readyReason(b)); c != 0 {
			return c
		}
		switch {
		case a.Expiry == nil && b.Expiry == nil:
		case a.Expiry == nil:
			return 1
		case b.Expiry == nil:
			return -1
		default:
			if c := a.Expiry.Compare(*b.Expiry); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.API, b.API))
	})
}

// ready is 1 for a Ready binding so that sorting puts the others first.
func ready(b bindingFacts) int {
	if b.Ready != nil && b.Ready.Status == metav1.ConditionTrue {
		return 1
	}
	return 0
}

// writeStatus prints a line per Ready reason (how many bindings, the soonest expiry among them), then every binding.
func writeStatus(out io.Writer, bindings []bindingFacts, now time.Time) error {
	if len(bindings) == 0 {
		_, err := fmt.Fprintln(out, "No AcrPullBindings found.")
		return err
	}
	sortForStatus(bindings)
	w := printers.GetNewTabWriter(out)
	fmt.Fprintln(w, "REASON\tBINDINGS\tSOONEST EXPIRY")
	for start := 0; start < len(bindings); {
		end := start
		for end < len(bindings) && readyReason(bindings[end]) == readyReason(bindings[start]) && ready(bindings[end]) == ready(bindings[start]) {
			end++
		}
		soonest := "-"
		for _, b := range bindings[start:end] {
			if b.Expiry != nil {
				soonest = fmt.Sprintf("%s/%s %s", b.Namespace, b.Name, relative(*b.Expiry, now))
				break
			}
		}
		fmt.Fprintf(w, "%s\t%d\t%s\n", readyReason(bindings[start]), end-start, soonest)
		start = end
	}
	fmt.Fprintln(w, "\nNAMESPACE\tNAME\tAPI\tREADY\tVERIFIED\tSERVICE ACCOUNT\tEXPIRES")
	for _, b := range bindings {
		expires := "-"
		if b.Expiry != nil {
			expires = relative(*b.Expiry, now)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Namespace, b.Name, b.API, conditionSummary(b.Ready),
			conditionSummary(b.Verified), b.ServiceAccount, expires)
	}
	return w.Flush()
}
