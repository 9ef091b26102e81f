/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package chart_test tests the Helm chart in config/helm: helm lint and template, the values schema, the chart's
// agreement with controller-gen's CRDs and RBAC, and, on a real kube-apiserver, its RBAC and admission policies
// acting on requests made with the controller's own service-account token.
package chart_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/acrpull/acrpull/internal/harness/buildinputs"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

const (
	// kubeVersion is the chart's floor; helm's own default depends on how helm was built.
	kubeVersion = "v1.30.0"
	// releaseName and chartNamespace are what the README's install command uses.
	releaseName    = "acrpull"
	chartNamespace = "acrpull"
)

var (
	env      *testenv.Env
	helmPath string
	helmHome string
	// binDir holds the programs the tests build (programBinary).
	binDir   string
	chartDir = filepath.Join(testenv.ModuleRoot(), "config", "helm")
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	assets, err := testenv.AssetsDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	helmPath = filepath.Join(assets, "helm")
	if _, err := os.Stat(helmPath); err != nil {
		fmt.Fprintf(os.Stderr, "the chart tests need helm in %s (KUBEBUILDER_ASSETS): run `make test`, or "+
			"`WITH_HELM=1 hack/test-env.sh` and set KUBEBUILDER_ASSETS to the directory it prints: %v\n", assets, err)
		return 1
	}
	if helmHome, err = os.MkdirTemp("", "acrpull-helm-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(helmHome)
	if binDir, err = os.MkdirTemp("", "acrpull-chart-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	return m.Run()
}

// builtProgram is one ./cmd program, built at most once per test run.
type builtProgram struct {
	once sync.Once
	path string
	err  error
}

var (
	programsMu sync.Mutex
	programs   = map[string]*builtProgram{}
)

// programBinary builds ./cmd/<name> once per test run and returns its path.
func programBinary(t *testing.T, name string) string {
	t.Helper()
	if err := trackInputs(); err != nil {
		t.Fatal(err)
	}
	programsMu.Lock()
	p := programs[name]
	if p == nil {
		p = &builtProgram{}
		programs[name] = p
	}
	programsMu.Unlock()
	p.once.Do(func() {
		p.path = filepath.Join(binDir, name)
		build := exec.Command("go", "build", "-o", p.path, "./cmd/"+name)
		build.Dir = testenv.ModuleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			p.err = fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
		}
	})
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.path
}

// inputs are what helm and kubectl read on the tests' behalf; the programs the tests build (programBinary) are
// recorded with every package they link.
var (
	inputs        = []string{"config", "deploy"}
	builtPrograms = []string{"./cmd/acrpull", "./cmd/acrpull-nmi", "./cmd/acrpull-mic"}
)

var trackOnce sync.Once

// trackInputs reads every file the tests' subprocesses read. go test caches a passing result until a file the test
// process itself opened (while tests run, not in TestMain) changes; files only helm, kubectl or the go toolchain open
// would not count, and an edited chart would keep passing from the cache. Every test that runs a subprocess calls it.
func trackInputs() error {
	trackOnce.Do(func() { trackErr = readInputs() })
	return trackErr
}

var trackErr error

func readInputs() error {
	for _, dir := range inputs {
		err := filepath.WalkDir(filepath.Join(testenv.ModuleRoot(), dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			_, err = os.ReadFile(path)
			return err
		})
		if err != nil {
			return fmt.Errorf("reading the chart tests' inputs: %w", err)
		}
	}
	return buildinputs.Record(testenv.ModuleRoot(), builtPrograms...)
}

// helm runs the helm binary with its state kept out of the user's home, and returns its standard output. The error
// carries helm's standard error.
func helm(args ...string) (string, error) {
	if err := trackInputs(); err != nil {
		return "", err
	}
	cmd := exec.Command(helmPath, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// template renders the chart as release name in chartNamespace, with extra helm flags (--set, -f, --show-only).
func template(release string, flags ...string) (string, error) {
	args := append([]string{"template", release, chartDir, "--namespace", chartNamespace, "--kube-version", kubeVersion}, flags...)
	return helm(args...)
}

// mustTemplate renders the chart or fails the test.
func mustTemplate(t *testing.T, flags ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := template(releaseName, flags...)
	if err != nil {
		t.Fatal(err)
	}
	return mustDecode(t, out)
}

var runs sync.Map // name → *atomic.Int64

// fresh returns name the first time and name-2, name-3, ... after, so tests that create fixed-name objects on the
// shared apiserver also pass with -count=N (namespaces cannot be deleted there: no namespace controller runs).
func fresh(name string) string {
	c, _ := runs.LoadOrStore(name, new(atomic.Int64))
	if n := c.(*atomic.Int64).Add(1); n > 1 {
		return fmt.Sprintf("%s-%d", name, n)
	}
	return name
}

// valuesFile writes a values file for -f.
func valuesFile(t *testing.T, values string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(path, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustDecode splits a multi-document manifest into objects, skipping empty documents.
func mustDecode(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := decode(manifest)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decode(manifest string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// find returns the object of that kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// ofKind returns the objects of a kind.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// mustFind returns the object of that kind and name as a typed object, or fails the test.
func mustFind[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	u := find(objs, kind, name)
	if u == nil {
		t.Fatalf("the chart rendered no %s %q", kind, name)
	}
	typed := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, typed); err != nil {
		t.Fatalf("%s %q: %v", kind, name, err)
	}
	return typed
}
