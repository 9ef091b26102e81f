/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azauth/armidentity"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/mic"
	"github.com/acrpull/acrpull/internal/nmi"
	"github.com/acrpull/acrpull/internal/scheme"
)

// PodIdentityOptions size the podidentity scenario, AAD Pod Identity's nightly load: labelled pods on nodes of a few
// scale sets, spread round-robin over nodes and identities.
type PodIdentityOptions struct {
	Pods             int
	ScaleSets        int
	NodesPerScaleSet int
	Identities       int
	ServiceAccounts  int
	// Agents is how many nodes run an in-process node agent (spread over the scale sets); 0 runs one per node.
	Agents int
	// Modes to measure, in order: standard, federation.
	Modes []string
	// ARMOperationDelay is how long a scale-set update stays in progress; real ones take 40-60 s.
	ARMOperationDelay time.Duration
	// ARMWritesPerSecond is the fake Resource Manager's write budget per caller (0: unlimited).
	ARMWritesPerSecond float64
	// Workers is the concurrency of the bench's token requests.
	Workers int
	// Timeout bounds each mode, from the first pod creation.
	Timeout time.Duration
}

func (o *PodIdentityOptions) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Pods, 2000)
	def(&o.ScaleSets, 3)
	def(&o.NodesPerScaleSet, 10)
	def(&o.Identities, 10)
	def(&o.ServiceAccounts, 3)
	def(&o.Workers, 32)
	if len(o.Modes) == 0 {
		o.Modes = []string{"standard", "federation"}
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Minute
	}
}

// PodIdentityResult is both modes' figures.
type PodIdentityResult struct {
	Pods       int                   `json:"pods"`
	Nodes      int                   `json:"nodes"`
	ScaleSets  int                   `json:"scaleSets"`
	Identities int                   `json:"identities"`
	Standard   *StandardModeResult   `json:"standard,omitempty"`
	Federation *FederationModeResult `json:"federation,omitempty"`
}

// StandardModeResult is classic AAD Pod Identity: the assignment controller puts identities on scale sets through
// Resource Manager, and node agents hand out the node's IMDS tokens once a pod's record is Assigned.
type StandardModeResult struct {
	AgentNodes               int     `json:"agentNodes"`
	PodsCheckedThroughAgents int     `json:"podsCheckedThroughAgents"`
	PodsCheckedByRecord      int     `json:"podsCheckedByRecordOnly"`
	ARMOperationDelaySeconds float64 `json:"armOperationDelaySeconds"`
	ARMWritesPerSecond       float64 `json:"armWritesPerSecondPerCaller"`
	CreateSeconds            float64 `json:"podCreateSeconds"`
	// Seconds is from the first pod creation until every pod's record is Assigned and its token request succeeded.
	Seconds            float64 `json:"seconds"`
	AllAssignedSeconds float64 `json:"allRecordsAssignedSeconds"`
	FirstTokenSeconds  float64 `json:"firstTokenSeconds"`
	AssignedP50        float64 `json:"podCreatedToAssignedP50Seconds"`
	AssignedP99        float64 `json:"podCreatedToAssignedP99Seconds"`
	TokenP50           float64 `json:"podCreatedToTokenP50Seconds"`
	TokenP99           float64 `json:"podCreatedToTokenP99Seconds"`
	// AssignedAfterAgentWait counts pods Assigned later than the agent's total wait (upstream's 100 s) after their
	// creation: a pod asking at start-up would have been refused (404) and had to ask again.
	AssignedAfterAgentWait int `json:"podsAssignedLaterThanAgentWait"`
	// Cycles completed during the measurement; the cycle that wrote the last records may still be finishing.
	Cycles int64 `json:"cyclesCompleted"`
	// ARMRequests are Resource Manager's requests by verb and kind, throttled ones included.
	ARMRequests map[string]int64 `json:"armRequests"`
	ARM429s     int64            `json:"arm429s"`
	// ControllerGets and ControllerPatches are the reads and updates the controller asked for. ARM's GET count is
	// higher by one per accepted update: the SDK reads the resource once its operation has finished.
	ControllerGets    int `json:"controllerGets"`
	ControllerPatches int `json:"controllerPatches"`
	CyclesCallingARM  int `json:"cyclesCallingARM"`
	// MaxGetsPerScaleSetPerCycle and MaxPatchesPerScaleSetPerCycle are the controller's own calls, grouped by cycle.
	MaxGetsPerScaleSetPerCycle    int              `json:"maxGetsPerScaleSetPerCycle"`
	MaxPatchesPerScaleSetPerCycle int              `json:"maxPatchesPerScaleSetPerCycle"`
	WithinTarget                  bool             `json:"atMostOneGetAndOnePatchPerScaleSetPerCycle"`
	AzureRequests                 map[string]int64 `json:"azureRequestsByEndpoint"`
	ApiserverWrites               map[string]int64 `json:"apiserverWritesByResource"`
	TokenRequestRetries           int64            `json:"tokenRequestRetries"`
	// IMDSPairsIssued of IMDSPairs: after the run, each agent node's own IMDS asked directly for every identity its
	// pods use. In-process agents share MSAL's process-wide managed identity token cache, so after the first node
	// the agents' requests mostly do not reach their node's IMDS; this check does, per node.
	IMDSPairs       int `json:"imdsNodeIdentityPairs"`
	IMDSPairsIssued int `json:"imdsNodeIdentityPairsIssued"`
}

// FederationModeResult is per-pod federation: no assignment controller; node agents trade a pod-bound
// service-account token at Entra ID.
type FederationModeResult struct {
	AgentNodes      int     `json:"agentNodes"`
	PodsChecked     int     `json:"podsChecked"`
	ServiceAccounts int     `json:"serviceAccounts"`
	CreateSeconds   float64 `json:"podCreateSeconds"`
	// Seconds is from the first pod creation until every checked pod got its token through its node's agent.
	Seconds  float64 `json:"seconds"`
	TokenP50 float64 `json:"podCreatedToTokenP50Seconds"`
	TokenP99 float64 `json:"podCreatedToTokenP99Seconds"`
	// EntraTokenCalls against ExpectedEntraCalls: one per agent, identity, service account and resource (each agent
	// has its own cache, as each node's agent is its own process).
	EntraTokenCalls     int64            `json:"entraTokenCalls"`
	ExpectedEntraCalls  int              `json:"distinctAgentIdentityServiceAccountResource"`
	TokenRequests       int64            `json:"serviceAccountTokenRequests"`
	AzureRequests       map[string]int64 `json:"azureRequestsByEndpoint"`
	TokenRequestRetries int64            `json:"tokenRequestRetries"`
}

const (
	podIdentitySubscription = "00000000-0000-4000-8000-0000000000aa"
	podIdentityNodeGroup    = "MC_bench_cluster_eastus"
	micClientID             = "00000000-0000-4000-8000-00000000a1c0"
	micSecret               = "bench-mic-secret"
	// podIdentityResource is what every pod asks a token for, as the Key Vault SDK does.
	podIdentityResource = "https://vault.azure.net"
	tokenPath           = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
)

// agentTotalWait is how long a classic node agent holds a pod's request for its record to be Assigned: upstream's
// 20 retries 5 s apart.
const agentTotalWait = 100 * time.Second

// podIdentityClientID is the client ID of the i-th pod identity; distinct from the AcrPullBinding scenarios' ones.
func podIdentityClientID(i int) string { return fmt.Sprintf("00000000-0000-4000-9000-%012d", i) }

func podIdentityResourceID(i int) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/bench-id-%d",
		podIdentitySubscription, i)
}

// layout says where pod i runs and as whom: nodes and identities round-robin, independently, so every node sees every
// identity (node i%nodes, identity (i/nodes)%identities).
type layout struct {
	o     PodIdentityOptions
	nodes []string
}

func (l layout) node(i int) int     { return i % len(l.nodes) }
func (l layout) identity(i int) int { return (i / len(l.nodes)) % l.o.Identities }

// serviceAccount is the account pod i runs as in federation mode: one per application (identity), a few in all.
func (l layout) serviceAccount(i int) string {
	return fmt.Sprintf("sa-%d", l.identity(i)%l.o.ServiceAccounts)
}

// agentNodes picks the nodes that run an agent: all, or n spread evenly so every scale set has some.
func (l layout) agentNodes() []int {
	total := len(l.nodes)
	n := l.o.Agents
	if n <= 0 || n >= total {
		n = total
	}
	out := make([]int, 0, n)
	for k := range n {
		// Node k*total/n of a list ordered by scale set: with 3 of 30, nodes 0, 10 and 20, one per scale set.
		out = append(out, k*total/n)
	}
	return out
}

func podIP(mode, i int) string { return fmt.Sprintf("10.%d.%d.%d", 200+mode, i/250, i%250+1) }

func nodeSourceIP(mode, node int) string { return fmt.Sprintf("127.0.%d.%d", 10+mode, node+1) }

func (b *bench) podIdentity(ctx context.Context) (*PodIdentityResult, error) {
	o := b.o.PodIdentity
	o.defaults()
	closeLog, err := b.podIdentityLog()
	if err != nil {
		return nil, err
	}
	defer closeLog()
	res := &PodIdentityResult{Pods: o.Pods, Nodes: o.ScaleSets * o.NodesPerScaleSet, ScaleSets: o.ScaleSets, Identities: o.Identities}
	for i := range o.Identities {
		b.cloud.AddIdentity(azurefake.Identity{ClientID: podIdentityClientID(i), ResourceID: podIdentityResourceID(i), TenantID: tenantID})
	}
	for m, mode := range o.Modes {
		b.logf("podidentity: %s mode, %d pods", mode, o.Pods)
		switch mode {
		case "standard":
			res.Standard, err = b.standardMode(ctx, o, m)
		case "federation":
			res.Federation, err = b.federationMode(ctx, o, m)
		default:
			err = fmt.Errorf("unknown pod identity mode %q (standard, federation)", mode)
		}
		if err != nil {
			return res, fmt.Errorf("%s mode: %w (in-process log: %s)", mode, err, b.podIdentityLogPath())
		}
	}
	return res, nil
}

func (b *bench) podIdentityLogPath() string {
	return filepath.Join(os.TempDir(), "acrpull-bench-podidentity.log")
}

// podIdentityLog sends the in-process controller's and agents' logs to a file that outlives the bench, so a failed
// run can be read afterwards; the console keeps the bench's own progress lines.
func (b *bench) podIdentityLog() (func(), error) {
	f, err := os.Create(b.podIdentityLogPath())
	if err != nil {
		return nil, err
	}
	logf.SetLogger(zap.New(zap.WriteTo(f), zap.Level(zapcore.InfoLevel)))
	return func() { _ = f.Close() }, nil
}

// podIdentityObjects creates a mode's namespace, nodes, identities and bindings. Selectors and names carry the mode,
// so one mode's bindings never match the other's pods.
func (b *bench) podIdentityObjects(ctx context.Context, o PodIdentityOptions, mode string, withScaleSets bool) (string, layout, error) {
	ns := "podid-" + mode
	l := layout{o: o}
	if err := b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return "", l, err
	}
	accounts := []string{"default"}
	for s := range o.ServiceAccounts {
		accounts = append(accounts, fmt.Sprintf("sa-%d", s))
	}
	for _, sa := range accounts {
		if err := b.c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil {
			return "", l, err
		}
	}
	for s := range o.ScaleSets {
		var vmss string
		if withScaleSets {
			vmss = b.cloud.AddVMSS(podIdentitySubscription, podIdentityNodeGroup, fmt.Sprintf("%s-pool-%d", mode, s))
		}
		for i := range o.NodesPerScaleSet {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-vmss%d-%06d", mode, s, i)}}
			if withScaleSets {
				// The providerID the Azure cloud provider writes for a scale set instance.
				node.Spec.ProviderID = fmt.Sprintf("azure://%s/virtualMachines/%d", vmss, i)
			}
			if err := b.c.Create(ctx, node); err != nil {
				return "", l, err
			}
			l.nodes = append(l.nodes, node.Name)
		}
	}
	for i := range o.Identities {
		name := fmt.Sprintf("%s-id-%d", mode, i)
		if err := b.c.Create(ctx, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: podIdentityClientID(i), ResourceID: podIdentityResourceID(i)}}); err != nil {
			return "", l, err
		}
		if err := b.c.Create(ctx, &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-binding"},
			Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: name, Selector: name}}); err != nil {
			return "", l, err
		}
	}
	return ns, l, nil
}

// agentSet is the in-process node agents of one mode.
type agentSet struct {
	byNode map[int]*nmi.Agent
	stops  []func() error
}

func (a *agentSet) stop() error {
	var errs []error
	for _, s := range a.stops {
		errs = append(errs, s())
	}
	return errors.Join(errs...)
}

// startAgents runs a node agent for each of nodes and waits for their caches.
func (b *bench) startAgents(ctx context.Context, l layout, nodes []int, opts func(node int) nmi.Options) (*agentSet, error) {
	set := &agentSet{byNode: map[int]*nmi.Agent{}}
	for _, n := range nodes {
		o := opts(n)
		o.NodeName, o.ListenAddr, o.MetricsAddr, o.ProbeAddr = l.nodes[n], "127.0.0.1:0", "0", "0"
		o.Config = nmi.Config{MetadataHeaderRequired: true}
		o.DefaultTenantID, o.AzureCallTimeout = tenantID, 30*time.Second
		o.PodLookupAttempts, o.PodLookupInterval = 3, 200*time.Millisecond
		// Each agent is its own process on a real cluster: its own metrics, like its own cache.
		o.MetricsRegistry = prometheus.NewRegistry()
		agent, err := nmi.New(b.env.Config, o)
		if err != nil {
			_ = set.stop()
			return nil, err
		}
		actx, cancel := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		go func() { stopped <- agent.Start(actx) }()
		set.stops = append(set.stops, func() error { cancel(); return <-stopped })
		set.byNode[n] = agent
	}
	syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for n, a := range set.byNode {
		if !a.GetCache().WaitForCacheSync(syncCtx) {
			_ = set.stop()
			return nil, fmt.Errorf("the agent of node %s did not sync", l.nodes[n])
		}
	}
	return set, nil
}

// podTimes records when each pod was created, its record Assigned and its token issued.
type podTimes struct {
	created, assigned, token []time.Time
	mu                       sync.Mutex
}

func newPodTimes(n int) *podTimes {
	return &podTimes{created: make([]time.Time, n), assigned: make([]time.Time, n), token: make([]time.Time, n)}
}

func (p *podTimes) set(slice []time.Time, i int, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slice[i].IsZero() {
		return false
	}
	slice[i] = t
	return true
}

// latencies returns, sorted, done[i]-created[i] over the pods in which, and the latest done time.
func (p *podTimes) latencies(done []time.Time, which []int) ([]float64, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []float64
	var last time.Time
	for _, i := range which {
		if done[i].IsZero() {
			continue
		}
		out = append(out, done[i].Sub(p.created[i]).Seconds())
		if done[i].After(last) {
			last = done[i]
		}
	}
	sort.Float64s(out)
	return out, last
}

// tokenPool sends pods' token requests to their node's agent with bounded concurrency, as the pods would ask.
type tokenPool struct {
	queue     chan int
	remaining atomic.Int64
	retries   atomic.Int64
	done      chan struct{}
	failed    chan error
	wg        sync.WaitGroup
}

func newTokenPool(ctx context.Context, workers, expected int, ask func(ctx context.Context, i int) (int, string)) *tokenPool {
	p := &tokenPool{queue: make(chan int, max(expected, 1)), done: make(chan struct{}), failed: make(chan error, 1)}
	p.remaining.Store(int64(expected))
	if expected == 0 {
		close(p.done)
	}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case i := <-p.queue:
					if err := p.serve(ctx, i, ask); err != nil {
						select {
						case p.failed <- err:
						default:
						}
						continue
					}
					if p.remaining.Add(-1) == 0 {
						close(p.done)
					}
				}
			}
		}()
	}
	return p
}

// serve asks until the agent answers 200. Other answers are retried for a while: the agent's caches may not hold
// the new pod or its record's latest state yet.
func (p *tokenPool) serve(ctx context.Context, i int, ask func(ctx context.Context, i int) (int, string)) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		status, body := ask(ctx, i)
		if status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("pod %d: status %d: %s", i, status, strings.TrimSpace(body))
		}
		p.retries.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *tokenPool) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case err := <-p.failed:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%d pods still without a token: %w", p.remaining.Load(), ctx.Err())
	}
}

// askAgent sends pod ip's IMDS token request to agent in-process, with the request's source address set to the
// pod's, which is how the agent finds the caller.
func askAgent(ctx context.Context, agent *nmi.Agent, ip string) (int, string) {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, tokenPath+url.QueryEscape(podIdentityResource), nil)
	req.RemoteAddr = ip + ":40000"
	req.Header.Set("Metadata", "true")
	rec := httptest.NewRecorder()
	agent.Handler.ServeHTTP(rec, req)
	body := ""
	if rec.Code != http.StatusOK {
		body = rec.Body.String()
	}
	return rec.Code, body
}

// createPods creates the mode's pods and gives each its address and phase Running through the status subresource,
// as a kubelet would; created is called once each pod is Running.
func (b *bench) createPods(ctx context.Context, o PodIdentityOptions, ns, mode string, modeIndex int, l layout, times *podTimes, running func(i int)) error {
	return parallel(b.o.Workers, o.Pods, func(i int) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%05d", i),
				Labels: map[string]string{aadv1.PodLabel: fmt.Sprintf("%s-id-%d", mode, l.identity(i))}},
			Spec: corev1.PodSpec{NodeName: l.nodes[l.node(i)], Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		if mode == "federation" {
			pod.Spec.ServiceAccountName = l.serviceAccount(i)
		}
		times.set(times.created, i, time.Now())
		if err := b.c.Create(ctx, pod); err != nil {
			return err
		}
		ip := podIP(modeIndex, i)
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		if err := b.c.Status().Update(ctx, pod); err != nil {
			return err
		}
		running(i)
		return nil
	})
}

// countingARM is the controller's Resource Manager client, counting its calls per scale set and cycle: the cycle
// counter only moves at a cycle's end and cycles never overlap, so calls seeing the same count share a cycle.
type countingARM struct {
	mic.ARM
	cycles  func() int64
	mu      sync.Mutex
	gets    map[string]int
	patches map[string]int
}

func (c *countingARM) count(m map[string]int, host string) {
	key := fmt.Sprintf("%d|%s", c.cycles(), strings.ToLower(host))
	c.mu.Lock()
	defer c.mu.Unlock()
	m[key]++
}

func (c *countingARM) HostIdentities(ctx context.Context, hostID string) ([]string, error) {
	c.count(c.gets, hostID)
	return c.ARM.HostIdentities(ctx, hostID)
}

func (c *countingARM) UpdateHostIdentities(ctx context.Context, hostID string, current, add, remove []string) error {
	c.count(c.patches, hostID)
	return c.ARM.UpdateHostIdentities(ctx, hostID, current, add, remove)
}

// armCalls sums up the controller's calls: totals, the most to one scale set in one cycle, and the cycles that called.
type armCalls struct {
	gets, patches       int
	maxGets, maxPatches int
	cycles              int
}

func (c *countingARM) calls() armCalls {
	c.mu.Lock()
	defer c.mu.Unlock()
	var a armCalls
	cycles := map[string]bool{}
	for key, n := range c.gets {
		a.gets += n
		a.maxGets = max(a.maxGets, n)
		cycles[strings.SplitN(key, "|", 2)[0]] = true
	}
	for key, n := range c.patches {
		a.patches += n
		a.maxPatches = max(a.maxPatches, n)
		cycles[strings.SplitN(key, "|", 2)[0]] = true
	}
	a.cycles = len(cycles)
	return a
}

func gatherCounter(reg *prometheus.Registry, name string) int64 {
	families, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return int64(f.GetMetric()[0].GetCounter().GetValue())
		}
	}
	return 0
}

// standardMode measures classic assignment: MIC in-process against the fake Resource Manager, node agents following
// its records and asking their node's IMDS.
func (b *bench) standardMode(ctx context.Context, o PodIdentityOptions, modeIndex int) (*StandardModeResult, error) {
	ns, l, err := b.podIdentityObjects(ctx, o, "standard", true)
	if err != nil {
		return nil, err
	}
	b.cloud.AddIdentity(azurefake.Identity{ClientID: micClientID, TenantID: tenantID})
	b.cloud.AddClientSecret(micClientID, micSecret)
	azure := azauth.NewClient(azauth.Options{HTTPClient: b.cloud.HTTPClient(), CallTimeout: 30 * time.Second})
	armClient, err := armidentity.New(azure, azauth.PublicCloud, "", armidentity.Credential{TenantID: tenantID, ClientID: micClientID, ClientSecret: micSecret}, time.Second)
	if err != nil {
		return nil, err
	}
	registry := prometheus.NewRegistry()
	arm := &countingARM{ARM: armClient, gets: map[string]int{}, patches: map[string]int{},
		cycles: func() int64 { return gatherCounter(registry, "aadpodidentity_mic_cycle_count") }}
	// The controller's defaults are upstream's: a 3-minute full check, two retries of a refused PATCH.
	mgr, err := mic.NewManager(b.env.Config, mic.Options{MetricsAddr: "0", ProbeAddr: "0", ARM: arm, MetricsRegistry: registry,
		Config: mic.Config{ReconcileInterval: 3 * time.Minute, UpdateRetries: 2}})
	if err != nil {
		return nil, err
	}
	micCtx, stopMIC := context.WithCancel(ctx)
	micDone := make(chan error, 1)
	go func() { micDone <- mgr.Start(micCtx) }()
	defer func() {
		stopMIC()
		<-micDone
	}()

	agentNodes := l.agentNodes()
	for _, n := range agentNodes {
		node := &corev1.Node{}
		if err := b.c.Get(ctx, client.ObjectKey{Name: l.nodes[n]}, node); err != nil {
			return nil, err
		}
		if err := b.cloud.PlaceNode(nodeSourceIP(modeIndex, n), node.Spec.ProviderID); err != nil {
			return nil, err
		}
	}
	agents, err := b.startAgents(ctx, l, agentNodes, func(n int) nmi.Options {
		// Classic mode: wait for the controller's record, then ask this node's IMDS, which answers for an identity
		// only once it is on the node's scale set. The waits are upstream's 80 s and 100 s.
		return nmi.Options{Type0Source: nmi.SourceIMDS, FollowAssignments: true,
			AssignmentCreatedWait: 80 * time.Second, AssignmentTotalWait: agentTotalWait,
			AzureHTTPClient: b.cloud.HTTPClientFrom(nodeSourceIP(modeIndex, n))}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = agents.stop() }()
	b.logf("podidentity: controller and %d node agents running", len(agentNodes))

	b.cloud.SetARMOperationDelay(o.ARMOperationDelay)
	b.cloud.SetARMRateLimit(0, o.ARMWritesPerSecond)
	defer func() {
		b.cloud.SetARMOperationDelay(0)
		b.cloud.SetARMRateLimit(0, 0)
	}()
	// Let the controller's first cycles (nothing to assign yet) pass before the counters start.
	time.Sleep(2 * time.Second)
	b.cloud.ResetCounts()
	cyclesBefore := arm.cycles()
	writesBefore, err := b.apiserverRequests(ctx, podIdentityResources)
	if err != nil {
		return nil, err
	}

	mctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	times := newPodTimes(o.Pods)
	podByName := map[string]int{}
	throughAgent, byRecord := []int{}, []int{}
	for i := range o.Pods {
		podByName[fmt.Sprintf("app-%05d", i)] = i
		if agents.byNode[l.node(i)] != nil {
			throughAgent = append(throughAgent, i)
		} else {
			byRecord = append(byRecord, i)
		}
	}
	pool := newTokenPool(mctx, o.Workers, len(throughAgent), func(ctx context.Context, i int) (int, string) {
		status, body := askAgent(ctx, agents.byNode[l.node(i)], podIP(modeIndex, i))
		if status == http.StatusOK {
			times.set(times.token, i, time.Now())
		}
		return status, body
	})
	var assignedCount atomic.Int64
	allAssigned := make(chan struct{})
	// A pod's request goes out once its record is Assigned: the agent would hold it until then anyway, and the
	// bench's workers are better spent on pods that can be served.
	stopWatch, err := b.watchRecords(mctx, ns, func(pod string) {
		i, ok := podByName[pod]
		if !ok || !times.set(times.assigned, i, time.Now()) {
			return
		}
		if agents.byNode[l.node(i)] != nil {
			pool.queue <- i
		}
		if assignedCount.Add(1) == int64(o.Pods) {
			close(allAssigned)
		}
	})
	if err != nil {
		return nil, err
	}
	defer stopWatch()

	start := time.Now()
	if err := b.createPods(mctx, o, ns, "standard", modeIndex, l, times, func(int) {}); err != nil {
		return nil, err
	}
	createSecs := time.Since(start).Seconds()
	b.logf("podidentity: created %d pods in %.1f s; waiting for records and tokens", o.Pods, createSecs)
	progress := b.progress(mctx, "records Assigned", func() int64 { return assignedCount.Load() }, int64(o.Pods))
	defer progress()
	select {
	case <-allAssigned:
	case <-mctx.Done():
		return nil, fmt.Errorf("%d/%d records Assigned: %w", assignedCount.Load(), o.Pods, mctx.Err())
	}
	if err := pool.wait(mctx); err != nil {
		return nil, err
	}
	end := time.Now()
	cycles := arm.cycles() - cyclesBefore
	armRequests := map[string]int64{}
	for _, m := range []string{http.MethodGet, http.MethodPatch} {
		for _, k := range []string{azurefake.ARMKindVMSS, azurefake.ARMKindOperation} {
			if n := b.cloud.ARMCount(m, k); n > 0 {
				armRequests[m+" "+k] = n
			}
		}
	}
	var throttled int64
	for ep, byStatus := range b.cloud.StatusCounts() {
		if ep == azurefake.ARMRead || ep == azurefake.ARMWrite {
			throttled += byStatus[http429]
		}
	}
	writesAfter, err := b.apiserverRequests(ctx, podIdentityResources)
	if err != nil {
		return nil, err
	}
	calls := arm.calls()
	azureRequests := azureCounts(b.cloud)
	// After the counters are read: the check's own IMDS requests are not the agents'.
	pairs, issued := b.checkNodeIMDS(ctx, o, l, agentNodes, modeIndex)
	assignedLat, lastAssigned := times.latencies(times.assigned, allPods(o.Pods))
	late := len(assignedLat) - sort.SearchFloat64s(assignedLat, agentTotalWait.Seconds())
	tokenLat, _ := times.latencies(times.token, throughAgent)
	firstToken := 0.0
	if len(tokenLat) > 0 {
		firstToken = tokenLat[0]
	}
	return &StandardModeResult{
		AgentNodes: len(agentNodes), PodsCheckedThroughAgents: len(throughAgent), PodsCheckedByRecord: len(byRecord),
		ARMOperationDelaySeconds: o.ARMOperationDelay.Seconds(), ARMWritesPerSecond: o.ARMWritesPerSecond,
		CreateSeconds: createSecs, Seconds: end.Sub(start).Seconds(), AllAssignedSeconds: lastAssigned.Sub(start).Seconds(),
		FirstTokenSeconds: firstToken,
		AssignedP50:       percentile(assignedLat, 0.5), AssignedP99: percentile(assignedLat, 0.99),
		TokenP50: percentile(tokenLat, 0.5), TokenP99: percentile(tokenLat, 0.99),
		AssignedAfterAgentWait: late, Cycles: cycles, ARMRequests: armRequests, ARM429s: throttled,
		ControllerGets: calls.gets, ControllerPatches: calls.patches, CyclesCallingARM: calls.cycles,
		MaxGetsPerScaleSetPerCycle: calls.maxGets, MaxPatchesPerScaleSetPerCycle: calls.maxPatches,
		WithinTarget:  calls.maxGets <= 1 && calls.maxPatches <= 1,
		AzureRequests: azureRequests, ApiserverWrites: diffWrites(writesBefore, writesAfter),
		TokenRequestRetries: pool.retries.Load(), IMDSPairs: pairs, IMDSPairsIssued: issued,
	}, nil
}

// checkNodeIMDS asks each agent node's IMDS, from the node's address, for every identity the node's pods use, and
// counts the node and identity pairs it issued a token for: only identities on the node's scale set are issued.
func (b *bench) checkNodeIMDS(ctx context.Context, o PodIdentityOptions, l layout, nodes []int, modeIndex int) (pairs, issued int) {
	for _, n := range nodes {
		used := map[int]bool{}
		for i := n; i < o.Pods; i += len(l.nodes) {
			used[l.identity(i)] = true
		}
		hc := b.cloud.HTTPClientFrom(nodeSourceIP(modeIndex, n))
		for id := range used {
			pairs++
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://169.254.169.254"+tokenPath+
				url.QueryEscape(podIdentityResource)+"&client_id="+podIdentityClientID(id), nil)
			req.Header.Set("Metadata", "true")
			if resp, err := hc.Do(req); err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					issued++
				}
			}
			cancel()
		}
	}
	return pairs, issued
}

func allPods(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// federationMode measures per-pod federation: no controller, agents trading pod-bound service-account tokens.
func (b *bench) federationMode(ctx context.Context, o PodIdentityOptions, modeIndex int) (*FederationModeResult, error) {
	ns, l, err := b.podIdentityObjects(ctx, o, "federation", false)
	if err != nil {
		return nil, err
	}
	// Each identity trusts its application's service account, as a workload identity setup has it.
	for i := range o.Identities {
		b.cloud.AddFederatedCredential(podIdentityClientID(i), azurefake.FederatedCredential{Issuer: testenv.Issuer,
			Subject: fmt.Sprintf("system:serviceaccount:%s:sa-%d", ns, i%o.ServiceAccounts), Audiences: []string{"api://AzureADTokenExchange"}})
	}
	agentNodes := l.agentNodes()
	agents, err := b.startAgents(ctx, l, agentNodes, func(int) nmi.Options {
		return nmi.Options{Type0Source: nmi.SourceFederation, AzureHTTPClient: b.cloud.HTTPClient()}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = agents.stop() }()
	b.logf("podidentity: %d node agents running (federation)", len(agentNodes))
	b.cloud.ResetCounts()
	before, err := b.apiserverRequests(ctx, podIdentityResources)
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	times := newPodTimes(o.Pods)
	var checked []int
	distinct := map[string]bool{}
	for i := range o.Pods {
		if agents.byNode[l.node(i)] != nil {
			checked = append(checked, i)
			distinct[fmt.Sprintf("%d|%d|%s|%s", l.node(i), l.identity(i), l.serviceAccount(i), podIdentityResource)] = true
		}
	}
	pool := newTokenPool(mctx, o.Workers, len(checked), func(ctx context.Context, i int) (int, string) {
		status, body := askAgent(ctx, agents.byNode[l.node(i)], podIP(modeIndex, i))
		if status == http.StatusOK {
			times.set(times.token, i, time.Now())
		}
		return status, body
	})
	start := time.Now()
	// Each pod asks as soon as it is Running, as an application starting up does.
	err = b.createPods(mctx, o, ns, "federation", modeIndex, l, times, func(i int) {
		if agents.byNode[l.node(i)] != nil {
			pool.queue <- i
		}
	})
	if err != nil {
		return nil, err
	}
	createSecs := time.Since(start).Seconds()
	b.logf("podidentity: created %d pods in %.1f s; waiting for tokens", o.Pods, createSecs)
	stopProgress := b.progress(mctx, "pods with a token", func() int64 { return int64(len(checked)) - pool.remaining.Load() }, int64(len(checked)))
	defer stopProgress()
	if err := pool.wait(mctx); err != nil {
		return nil, err
	}
	end := time.Now()
	after, err := b.apiserverRequests(ctx, podIdentityResources)
	if err != nil {
		return nil, err
	}
	writes := diffWrites(before, after)
	lat, _ := times.latencies(times.token, checked)
	return &FederationModeResult{
		AgentNodes: len(agentNodes), PodsChecked: len(checked), ServiceAccounts: o.ServiceAccounts,
		CreateSeconds: createSecs, Seconds: end.Sub(start).Seconds(),
		TokenP50: percentile(lat, 0.5), TokenP99: percentile(lat, 0.99),
		EntraTokenCalls: b.cloud.Count(azurefake.EntraToken), ExpectedEntraCalls: len(distinct),
		TokenRequests: writes["serviceaccounts/token POST"], AzureRequests: azureCounts(b.cloud),
		TokenRequestRetries: pool.retries.Load(),
	}, nil
}

// watchRecords calls assigned with the pod name of every record of a pod in podNamespace that is (or becomes)
// Assigned. An informer, so a watch the apiserver closes is resumed without losing events.
func (b *bench) watchRecords(ctx context.Context, podNamespace string, assigned func(pod string)) (func(), error) {
	c, err := cache.New(b.env.Config, cache.Options{Scheme: scheme.New(),
		DefaultNamespaces: map[string]cache.Config{mic.DefaultNamespace: {}}})
	if err != nil {
		return nil, err
	}
	inf, err := c.GetInformer(ctx, &aadv1.AzureAssignedIdentity{})
	if err != nil {
		return nil, err
	}
	seen := func(obj any) {
		if r, ok := obj.(*aadv1.AzureAssignedIdentity); ok && r.Spec.PodNamespace == podNamespace && r.Status.Status == aadv1.AssignedIDAssigned {
			assigned(r.Spec.Pod)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    seen,
		UpdateFunc: func(_, obj any) { seen(obj) },
	}); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Start(wctx) }()
	if !c.WaitForCacheSync(wctx) {
		cancel()
		<-done
		return nil, errors.New("the record watch did not sync")
	}
	return func() { cancel(); <-done }, nil
}

// progress logs a count every 10 s while it changes.
func (b *bench) progress(ctx context.Context, what string, count func() int64, total int64) func() {
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := int64(-1)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				if n := count(); n != last {
					b.logf("podidentity: %d/%d %s", n, total, what)
					last = n
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// podIdentityResources are the apiserver resources whose writes the modes report.
var podIdentityResources = []string{"pods", "azureassignedidentities", "serviceaccounts", "events"}

func printPodIdentity(row func(k string, format string, args ...any), p *PodIdentityResult) {
	if p == nil {
		return
	}
	row("podidentity: layout", "%d pods, %d nodes in %d scale sets, %d identities", p.Pods, p.Nodes, p.ScaleSets, p.Identities)
	if s := p.Standard; s != nil {
		row("standard: fake ARM", "scale-set update takes %s, writes limited to %s per caller",
			time.Duration(s.ARMOperationDelaySeconds*float64(time.Second)), perSecond(s.ARMWritesPerSecond))
		row("standard: pods checked", "%d through node agents (%d agents), %d by their record only",
			s.PodsCheckedThroughAgents, s.AgentNodes, s.PodsCheckedByRecord)
		row("standard: every pod has its token", "%.1f s from the first pod creation (pods created in %.1f s; all records Assigned at %.1f s)",
			s.Seconds, s.CreateSeconds, s.AllAssignedSeconds)
		row("standard: pod created to Assigned p50 / p99", "%.2f s / %.2f s", s.AssignedP50, s.AssignedP99)
		row("standard: pod created to token p50 / p99", "%.2f s / %.2f s (first token %.2f s)", s.TokenP50, s.TokenP99, s.FirstTokenSeconds)
		row("standard: pods Assigned later than 100 s", "%d (the agent's wait: asking at start-up, they would have had a 404)", s.AssignedAfterAgentWait)
		row("standard: cycles / ARM requests", "%d cycles completed; %s; 429s %d", s.Cycles, sortedMap(s.ARMRequests), s.ARM429s)
		verdict := "met"
		if !s.WithinTarget {
			verdict = "NOT met"
		}
		row("standard: controller's ARM calls", "%d GET, %d PATCH in %d cycles that called ARM (ARM's GETs add the SDK's read after each update)",
			s.ControllerGets, s.ControllerPatches, s.CyclesCallingARM)
		row("standard: <=1 GET and <=1 PATCH per scale set per cycle", "%s (max in one cycle: %d GET, %d PATCH per scale set)",
			verdict, s.MaxGetsPerScaleSetPerCycle, s.MaxPatchesPerScaleSetPerCycle)
		row("standard: Azure requests", "%s", sortedMap(s.AzureRequests))
		row("standard: apiserver writes", "%s", sortedMap(s.ApiserverWrites))
		row("standard: token request retries", "%d", s.TokenRequestRetries)
		row("standard: node IMDS check afterwards", "%d/%d node x identity pairs issued (agents share MSAL's IMDS token cache in one process)",
			s.IMDSPairsIssued, s.IMDSPairs)
	}
	if f := p.Federation; f != nil {
		row("federation: pods checked", "%d through node agents (%d agents), %d service accounts", f.PodsChecked, f.AgentNodes, f.ServiceAccounts)
		row("federation: every pod has its token", "%.1f s from the first pod creation (pods created in %.1f s)", f.Seconds, f.CreateSeconds)
		row("federation: pod created to token p50 / p99", "%.2f s / %.2f s", f.TokenP50, f.TokenP99)
		row("federation: Entra token calls", "%d (distinct agent x identity x service account x resource: %d)", f.EntraTokenCalls, f.ExpectedEntraCalls)
		row("federation: TokenRequests", "%d (one per Entra cache miss)", f.TokenRequests)
		row("federation: Azure requests", "%s", sortedMap(f.AzureRequests))
		row("federation: token request retries", "%d", f.TokenRequestRetries)
	}
}

func perSecond(r float64) string {
	if r <= 0 {
		return "nothing"
	}
	return fmt.Sprintf("%g/s", r)
}
