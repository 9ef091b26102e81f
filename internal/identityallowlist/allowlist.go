/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package identityallowlist reads the administrator's allow-list of which namespaces may use which managed
// identities, from the directory a ConfigMap is mounted at. The same ConfigMap is the params object of the chart's
// ValidatingAdmissionPolicy, so admission and the controller decide from one source.
//
// Every rule is three keys of the ConfigMap, sharing the rule's name:
//
//	<rule>.namespaces   namespaces the rule applies to, or "*" for every namespace
//	<rule>.clientIDs    managed identity client IDs those namespaces may use
//	<rule>.resourceIDs  managed identity resource IDs those namespaces may use
//
// Values are lists separated by commas or white space. IDs compare case-insensitively (Azure treats both kinds that
// way). A binding may use an identity when some rule names its namespace and the ID the binding uses.
package identityallowlist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
)

// Suffixes of the ConfigMap keys that make up a rule.
const (
	NamespacesSuffix  = ".namespaces"
	ClientIDsSuffix   = ".clientIDs"
	ResourceIDsSuffix = ".resourceIDs"
	// AnyNamespace in a rule's namespaces makes it apply everywhere.
	AnyNamespace = "*"
)

// Rule lets its namespaces use its identities.
type Rule struct {
	Name        string
	Namespaces  []string
	ClientIDs   []string
	ResourceIDs []string
}

// AllowList is a parsed set of rules; the zero value allows nothing.
type AllowList struct {
	Rules []Rule
}

// Allows says whether namespace may use the managed identity named by clientID or, when clientID is empty, by
// resourceID. An identity named by neither is allowed by no rule.
func (a *AllowList) Allows(namespace, clientID, resourceID string) bool {
	clientID, resourceID = strings.ToLower(clientID), strings.ToLower(resourceID)
	for _, r := range a.Rules {
		if !slices.Contains(r.Namespaces, AnyNamespace) && !slices.Contains(r.Namespaces, namespace) {
			continue
		}
		switch {
		case clientID != "" && slices.Contains(r.ClientIDs, clientID):
			return true
		case clientID == "" && resourceID != "" && slices.Contains(r.ResourceIDs, resourceID):
			return true
		}
	}
	return false
}

// Parse builds an allow-list from a ConfigMap's data. A key that is not part of a rule, or a rule naming
// identities but no namespace, is an error: a typo must not silently allow or refuse.
func Parse(data map[string]string) (*AllowList, error) {
	rules := map[string]*Rule{}
	var errs []error
	for key, value := range data {
		name, field, ok := splitKey(key)
		if !ok {
			errs = append(errs, fmt.Errorf("key %q is none of <rule>%s, <rule>%s, <rule>%s", key,
				NamespacesSuffix, ClientIDsSuffix, ResourceIDsSuffix))
			continue
		}
		r := rules[name]
		if r == nil {
			r = &Rule{Name: name}
			rules[name] = r
		}
		items := list(value)
		switch field {
		case NamespacesSuffix:
			r.Namespaces = items
		case ClientIDsSuffix:
			r.ClientIDs = lower(items)
		case ResourceIDsSuffix:
			r.ResourceIDs = lower(items)
		}
	}
	out := &AllowList{}
	for _, r := range rules {
		if len(r.Namespaces) == 0 && (len(r.ClientIDs) > 0 || len(r.ResourceIDs) > 0) {
			errs = append(errs, fmt.Errorf("rule %q names identities but no namespaces (%s%s)", r.Name, r.Name, NamespacesSuffix))
		}
		out.Rules = append(out.Rules, *r)
	}
	sort.Slice(out.Rules, func(i, j int) bool { return out.Rules[i].Name < out.Rules[j].Name })
	return out, errors.Join(errs...)
}

func splitKey(key string) (name, field string, ok bool) {
	for _, suffix := range []string{NamespacesSuffix, ClientIDsSuffix, ResourceIDsSuffix} {
		if name, found := strings.CutSuffix(key, suffix); found && name != "" {
			return name, suffix, true
		}
	}
	return "", "", false
}

func list(value string) []string {
	return strings.FieldsFunc(value, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

func lower(items []string) []string {
	for i := range items {
		items[i] = strings.ToLower(items[i])
	}
	return items
}

// Dir is an allow-list read from a mounted ConfigMap directory. It reads the directory again when the kubelet has
// swapped in new contents (the ..data link changed), so an administrator's edit takes effect without a restart.
type Dir struct {
	path string

	mu      sync.Mutex
	version string
	current *AllowList
}

// dataLink is the link a ConfigMap volume swaps atomically on every update.
const dataLink = "..data"

// Open reads the allow-list in dir once, so a broken one stops the controller at start-up.
func Open(dir string) (*Dir, error) {
	d := &Dir{path: dir}
	if _, err := d.Current(); err != nil {
		return nil, err
	}
	return d, nil
}

// Current is the allow-list as the directory holds it now. An error means it cannot be read; callers refuse every
// managed identity then.
func (d *Dir) Current() (*AllowList, error) {
	version, err := os.Readlink(filepath.Join(d.path, dataLink))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("managed-identity allow-list %s: %w", d.path, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// A directory not written by a ConfigMap volume (no ..data link) is read every time.
	if d.current != nil && version != "" && version == d.version {
		return d.current, nil
	}
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("managed-identity allow-list: %w", err)
	}
	data := map[string]string{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d.path, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("managed-identity allow-list: %w", err)
		}
		data[e.Name()] = string(b)
	}
	a, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("managed-identity allow-list %s: %w", d.path, err)
	}
	d.current, d.version = a, version
	return a, nil
}
