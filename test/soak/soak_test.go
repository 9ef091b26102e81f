/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package soak kills the real controller process at random points and checks that what it leaves behind converges.
// `make test` runs a short, seeded version; `make test-soak` runs it long (ACRPULL_SOAK_BINDINGS, ACRPULL_SOAK_KILLS,
// ACRPULL_SOAK_SEED).
package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/buildinputs"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

const (
	registryHost = "soak.azurecr.io"
	tenantID     = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	clientID     = "11111111-1111-1111-1111-111111111111"
	leaseNS      = "kube-system"
)

var (
	env    *testenv.Env
	cloud  *azurefake.Cloud
	binary string
	caFile string
)

func TestMain(m *testing.M) {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer func() { _ = env.Stop() }()
		if cloud, err = azurefake.New(azurefake.Options{}); err == nil {
			err = cloud.Start()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cloud.Close()
		cloud.AddRegistry(azurefake.Registry{Host: registryHost})
		cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
		cloud.AddRoleAssignment(clientID, registryHost, []string{"*"}, []string{"pull"})
		dir, _ := os.MkdirTemp("", "acrpull-soak-")
		defer os.RemoveAll(dir)
		caFile = filepath.Join(dir, "ca.pem")
		_ = os.WriteFile(caFile, cloud.CACertPEM(), 0o644)
		binary = filepath.Join(dir, "acrpull")
		build := exec.Command("go", "build", "-o", binary, "./cmd/acrpull")
		build.Dir = testenv.ModuleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building acrpull: %v\n%s", err, out)
			return 1
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNS}}
		_ = env.Client.Create(context.Background(), ns)
		return m.Run()
	}()
	os.Exit(code)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// controller is one running acrpull process.
type controller struct {
	cmd *exec.Cmd
	log string
}

func startController(t *testing.T, name string, extra ...string) *controller {
	t.Helper()
	// The binary is built in TestMain, whose reads go test does not see: what it is built from is recorded here.
	if err := buildinputs.Record(testenv.ModuleRoot(), "./cmd/acrpull"); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--metrics-bind-address=0", "--health-probe-bind-address=0", "--azure-timeout=5s"}, extra...)
	cmd := exec.Command(binary, args...)
	proxy := cloud.ProxyURL().String()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.KubeconfigPath, "HTTPS_PROXY="+proxy, "HTTP_PROXY="+proxy,
		"NO_PROXY=127.0.0.1,localhost", "SSL_CERT_FILE="+caFile)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &controller{cmd: cmd, log: log}
	t.Cleanup(func() { c.kill(); _ = f.Close() })
	return c
}

// kill ends the process with SIGKILL: no deferred cleanup, no lease release.
func (c *controller) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	}
}

func binding(ns, name, target string) *acrv1beta2.AcrPullBinding {
	return &acrv1beta2.AcrPullBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: acrv1beta2.AcrPullBindingSpec{
			ACR:                acrv1beta2.AcrConfiguration{Server: registryHost, Scope: "repository:app:pull", Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: clientID}},
			ServiceAccountName: target,
		},
	}
}

// The controller is killed with SIGKILL at random points while bindings are created, retargeted and deleted. After
// a final restart every live binding is Ready with its secret listed exactly once on its target, and nothing is
// left behind: no orphan secrets, no dangling or duplicate references, no stuck finalizers.
func TestCrashConsistency(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	seed := uint64(envInt("ACRPULL_SOAK_SEED", 1))
	n, kills := envInt("ACRPULL_SOAK_BINDINGS", 150), envInt("ACRPULL_SOAK_KILLS", 3)
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d, %d bindings, %d kills", seed, n, kills)
	namespaces := []string{"crash-a", "crash-b", "crash-c"}
	accounts := []string{"one", "two"}
	for _, ns := range namespaces {
		g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		for _, sa := range accounts {
			g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "theirs"}}})).To(Succeed())
		}
	}

	created := 0
	live := map[string]*acrv1beta2.AcrPullBinding{}
	for round := 0; round <= kills; round++ {
		c := startController(t, fmt.Sprintf("round-%d", round))
		deadline := time.Now().Add(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		for time.Now().Before(deadline) {
			switch op := rng.IntN(10); {
			case op < 6 && created < n:
				b := binding(namespaces[rng.IntN(len(namespaces))], fmt.Sprintf("b-%d", created), accounts[rng.IntN(len(accounts))])
				created++
				g.Expect(env.Client.Create(ctx, b)).To(Succeed())
				live[b.Namespace+"/"+b.Name] = b
			case op < 8 && len(live) > 0:
				b := pick(rng, live)
				fresh := &acrv1beta2.AcrPullBinding{}
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), fresh); err == nil {
					fresh.Spec.ServiceAccountName = accounts[rng.IntN(len(accounts))]
					_ = env.Client.Update(ctx, fresh) // a conflict is a lost race, as for any user
				}
			case len(live) > 0:
				b := pick(rng, live)
				g.Expect(client.IgnoreNotFound(env.Client.Delete(ctx, b))).To(Succeed())
				delete(live, b.Namespace+"/"+b.Name)
			}
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		}
		if round < kills {
			c.kill()
		}
	}
	t.Logf("%d created, %d live at the end", created, len(live))

	g.Eventually(func(g Gomega) { checkConverged(g, namespaces, live) }).
		WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
}

func pick(rng *rand.Rand, m map[string]*acrv1beta2.AcrPullBinding) *acrv1beta2.AcrPullBinding {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return m[keys[rng.IntN(len(keys))]]
}

func checkConverged(g Gomega, namespaces []string, live map[string]*acrv1beta2.AcrPullBinding) {
	ctx := context.Background()
	for _, ns := range namespaces {
		bindings := &acrv1beta2.AcrPullBindingList{}
		g.Expect(env.Client.List(ctx, bindings, client.InNamespace(ns))).To(Succeed())
		secrets := &corev1.SecretList{}
		g.Expect(env.Client.List(ctx, secrets, client.InNamespace(ns), client.HasLabels{"acr.microsoft.com/binding"})).To(Succeed())
		accounts := &corev1.ServiceAccountList{}
		g.Expect(env.Client.List(ctx, accounts, client.InNamespace(ns))).To(Succeed())

		target := map[string]string{}
		for _, b := range bindings.Items {
			g.Expect(b.DeletionTimestamp).To(BeNil(), "binding %s/%s stuck deleting", ns, b.Name)
			g.Expect(live).To(HaveKey(ns+"/"+b.Name), "binding %s/%s was deleted", ns, b.Name)
			g.Expect(meta.IsStatusConditionTrue(b.Status.Conditions, acrv1beta2.ConditionReady)).To(BeTrue(), "binding %s/%s not Ready", ns, b.Name)
			target["acr-pull-"+b.Name] = b.Spec.ServiceAccountName
		}
		for k := range live {
			if strings.HasPrefix(k, ns+"/") {
				g.Expect(target).To(HaveKey("acr-pull-"+strings.TrimPrefix(k, ns+"/")), "live binding %s missing", k)
			}
		}
		existing := map[string]bool{}
		for _, s := range secrets.Items {
			g.Expect(target).To(HaveKey(s.Name), "orphan secret %s/%s", ns, s.Name)
			existing[s.Name] = true
		}
		for _, sa := range accounts.Items {
			seen := map[string]int{}
			for _, r := range sa.ImagePullSecrets {
				seen[r.Name]++
			}
			g.Expect(seen["theirs"]).To(Equal(1), "foreign entry lost or duplicated on %s/%s", ns, sa.Name)
			for name, count := range seen {
				if name == "theirs" {
					continue
				}
				g.Expect(count).To(Equal(1), "%s listed %d times on %s/%s", name, count, ns, sa.Name)
				g.Expect(existing[name]).To(BeTrue(), "dangling reference %s on %s/%s", name, ns, sa.Name)
				g.Expect(target[name]).To(Equal(sa.Name), "%s listed on %s/%s, not its target", name, ns, sa.Name)
			}
			for name, sa2 := range target {
				if sa2 == sa.Name {
					g.Expect(seen[name]).To(Equal(1), "%s missing from its target %s/%s", name, ns, sa.Name)
				}
			}
		}
	}
}

// Two replicas with leader election: when the leader is killed, the other takes the lease within the lease
// duration and keeps serving, and no credential expires in between.
func TestLeaderFailover(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	cloud.SetLifetimes(azurefake.Lifetimes{ACRAccess: 40 * time.Second})
	defer cloud.SetLifetimes(azurefake.Lifetimes{})
	ns := "failover"
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}})).To(Succeed())

	leaderArgs := []string{"--leader-elect", "--leader-election-namespace=" + leaseNS}
	first := startController(t, "first", leaderArgs...)
	g.Eventually(func() string { return holder(g) }).WithTimeout(30 * time.Second).ShouldNot(BeEmpty())
	second := startController(t, "second", leaderArgs...)
	for i := range 5 {
		g.Expect(env.Client.Create(ctx, binding(ns, fmt.Sprintf("f-%d", i), "default"))).To(Succeed())
	}
	g.Eventually(func(g Gomega) { readyCount(g, ns, 5) }).WithTimeout(30 * time.Second).Should(Succeed())

	leader, standby := first, second
	if !strings.Contains(readFile(first.log), "Elected leader") {
		leader, standby = second, first
	}
	before := holder(g)
	killedAt := time.Now()
	leader.kill()
	g.Eventually(func() string { return holder(g) }).WithTimeout(30 * time.Second).ShouldNot(Equal(before))
	t.Logf("lease taken over %.1f s after the leader was killed", time.Since(killedAt).Seconds())
	g.Expect(time.Since(killedAt)).To(BeNumerically("<", 25*time.Second), "within the lease duration (15 s), a retry period (2 s) and slack for a loaded machine")
	g.Eventually(func() string { return readFile(standby.log) }).WithTimeout(10 * time.Second).Should(ContainSubstring("Elected leader"))

	// The new leader serves new bindings and keeps refreshing old ones before they expire.
	g.Expect(env.Client.Create(ctx, binding(ns, "after", "default"))).To(Succeed())
	g.Eventually(func(g Gomega) { readyCount(g, ns, 6) }).WithTimeout(30 * time.Second).Should(Succeed())
	g.Consistently(func(g Gomega) {
		secrets := &corev1.SecretList{}
		g.Expect(env.Client.List(ctx, secrets, client.InNamespace(ns))).To(Succeed())
		for _, s := range secrets.Items {
			exp, err := time.Parse(time.RFC3339, s.Annotations["acr.microsoft.com/token.expiry"])
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(exp).To(BeTemporally(">", time.Now()), "secret %s expired", s.Name)
		}
	}).WithTimeout(45 * time.Second).WithPolling(time.Second).Should(Succeed())
}

func holder(g Gomega) string {
	lease := &coordinationv1.Lease{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: leaseNS, Name: "aks.azure.com"}, lease)
	if apierrors.IsNotFound(err) || lease.Spec.HolderIdentity == nil {
		return ""
	}
	g.Expect(err).NotTo(HaveOccurred())
	return *lease.Spec.HolderIdentity
}

func readyCount(g Gomega, ns string, want int) {
	list := &acrv1beta2.AcrPullBindingList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	ready := 0
	for _, b := range list.Items {
		if meta.IsStatusConditionTrue(b.Status.Conditions, acrv1beta2.ConditionReady) {
			ready++
		}
	}
	g.Expect(ready).To(Equal(want))
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// The apiserver goes away for a few seconds and comes back on the same address while the controller runs, with
// bindings created and deleted around it: the controller's watches and writes recover without a restart of its own,
// and everything converges as after a crash.
//
// It takes about a minute (the apiserver's stop timeout is most of it), so it runs with the long soak only.
func TestAPIServerRestart(t *testing.T) {
	if os.Getenv("ACRPULL_SOAK_KILLS") == "" {
		t.Skip("long: runs with make test-soak (ACRPULL_SOAK_KILLS set)")
	}
	g := NewWithT(t)
	ctx := context.Background()
	ns := "restart"
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	for _, sa := range []string{"one", "two"} {
		g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "theirs"}}})).To(Succeed())
	}
	startController(t, "restart")
	live := map[string]*acrv1beta2.AcrPullBinding{}
	add := func(name, sa string) {
		b := binding(ns, name, sa)
		g.Expect(env.Client.Create(ctx, b)).To(Succeed())
		live[ns+"/"+name] = b
	}
	for i := range 10 {
		add(fmt.Sprintf("before-%d", i), []string{"one", "two"}[i%2])
	}
	g.Eventually(func(g Gomega) { readyCount(g, ns, 10) }).WithTimeout(30 * time.Second).Should(Succeed())

	// Deleted just before the apiserver goes away: the controller may not even have seen it yet.
	g.Expect(env.Client.Delete(ctx, live[ns+"/before-0"])).To(Succeed())
	delete(live, ns+"/before-0")
	g.Expect(env.Restart(3 * time.Second)).To(Succeed())

	for i := range 10 {
		add(fmt.Sprintf("after-%d", i), []string{"one", "two"}[i%2])
	}
	for _, name := range []string{"before-1", "before-2", "after-0"} {
		g.Expect(env.Client.Delete(ctx, live[ns+"/"+name])).To(Succeed())
		delete(live, ns+"/"+name)
	}
	g.Eventually(func(g Gomega) { checkConverged(g, []string{ns}, live) }).
		WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Succeed())
}
