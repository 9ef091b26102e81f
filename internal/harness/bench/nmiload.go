/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/mic"
)

// NMILoadOptions size the nmi scenario: one node's agent, run as its own process, asked for tokens by many pods at a
// constant total rate (open loop).
type NMILoadOptions struct {
	Pods int
	// Rate is the total token requests per second of all pods; each pod asks Rate/Pods times a second.
	Rate float64
	// Duration is the measured window, after every pod has had its first token.
	Duration   time.Duration
	Identities int
	// Modes to measure acrpull's agent in, in order: federation, standard.
	Modes []string
	// Agent is the node agent's command line; empty runs bin/acrpull-nmi, built first.
	Agent []string
	// Upstream, when set, is aad-pod-identity's nmi binary (v1.8.x), measured after acrpull's agent in standard mode
	// on the same pods and records; upstream has no federation mode.
	Upstream string
}

func (o *NMILoadOptions) defaults() {
	if o.Pods <= 0 {
		o.Pods = 100
	}
	if o.Rate <= 0 {
		o.Rate = 500
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if o.Identities <= 0 {
		o.Identities = 10
	}
	if len(o.Modes) == 0 {
		o.Modes = []string{"federation", "standard"}
	}
}

// NMILoadResult is every agent run's figures.
type NMILoadResult struct {
	Pods            int            `json:"pods"`
	Identities      int            `json:"identities"`
	Rate            float64        `json:"requestsPerSecond"`
	DurationSeconds float64        `json:"windowSeconds"`
	Runs            []*NMIAgentRun `json:"runs"`
}

// NMIAgentRun is one agent in one mode: a warm-up in which every pod asks once, then the open-loop window.
type NMIAgentRun struct {
	Agent string `json:"agent"`
	Mode  string `json:"mode"`
	// FirstToken is the latency of each pod's first request (caches cold), asked by all pods at once.
	FirstToken   latencySummary `json:"firstTokenLatency"`
	WarmupErrors int            `json:"warmupErrors"`
	// Requests were sent in the window; Answered got an HTTP answer (any status) within the bench's 10 s; OK were
	// answered 200 with a token; Errors are the rest, by status or cause ("timeout": no answer within 10 s).
	Requests int            `json:"requests"`
	Answered int            `json:"answered"`
	OK       int            `json:"ok"`
	Errors   map[string]int `json:"errors"`
	// Latency is the OK requests', from each request's due time to its whole answer.
	Latency latencySummary `json:"latency"`
	// SentRate is requests sent over the pacer's span; AnsweredRate is answers (any status) over the time from the
	// first due time to the last answer or timeout.
	SentRate     float64 `json:"sentPerSecond"`
	AnsweredRate float64 `json:"answeredPerSecond"`
	// MaxSendLagMs is how far the pacer fell behind its schedule at worst (the bench's own lag on a busy machine).
	MaxSendLagMs float64 `json:"maxSendLagMs"`
	// CPU used during the window (seconds) by the agent, the apiserver and etcd, and the bench (the load generator).
	CPUSeconds map[string]float64 `json:"cpuSeconds"`
	// AgentCPUPerRequestMicros is the agent's CPU time over the window divided by the requests it answered; work on
	// requests the bench gave up on counts too, so an overloaded agent's figure is higher than its cost per token.
	AgentCPUPerRequestMicros     float64 `json:"agentCPUPerRequestMicros"`
	ApiserverCPUPerRequestMicros float64 `json:"apiserverCPUPerRequestMicros"`
	// IdleCPUMillisPerSecond is each process's CPU with no requests, measured for a few seconds before the window;
	// the net figures subtract it over the window's length.
	IdleCPUMillisPerSecond          map[string]float64 `json:"idleCPUMillisPerSecond"`
	AgentNetCPUPerRequestMicros     float64            `json:"agentNetCPUPerRequestMicros"`
	ApiserverNetCPUPerRequestMicros float64            `json:"apiserverNetCPUPerRequestMicros"`
	AgentPeakRSSMiB                 float64            `json:"agentPeakRSSMiB"`
	// Azure requests during the warm-up and during the window: with a working token cache the window makes none.
	AzureRequestsWarmup map[string]int64 `json:"azureRequestsWarmup"`
	AzureRequestsWindow map[string]int64 `json:"azureRequestsWindow"`
	// ApiserverRequestsWindow are the apiserver's requests of the agent's kinds during the window (pods, service
	// account tokens, pod identity objects), by resource and verb.
	ApiserverRequestsWindow map[string]int64 `json:"apiserverRequestsWindow"`
	// LoadAverage is /proc/loadavg's 1-minute figure before and after the run: the machine is shared.
	LoadAverage [2]float64 `json:"loadAverage1mBeforeAfter"`
}

const (
	// nmiLoadResource is what every pod asks for, as the Key Vault SDK does.
	nmiLoadResource = "https://vault.azure.net"
	// nmiRequestTimeout bounds one request; a request not answered by then counts as an error.
	nmiRequestTimeout = 10 * time.Second
	// nmiIdleWindow is how long the processes' idle CPU is measured before each window.
	nmiIdleWindow = 5 * time.Second
)

// nmiClientID is the client ID of the nmi scenario's k-th identity; distinct from the other scenarios'.
func nmiClientID(k int) string { return fmt.Sprintf("00000000-0000-4000-a000-%012d", k) }

func nmiResourceID(k int) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nmi-id-%d",
		podIdentitySubscription, k)
}

// nmiPodIP is pod i's address in mode m. Every 127.0.0.0/8 address is on the loopback interface on Linux, so the
// bench can send from it without configuring anything, and the agent sees it as the request's source.
func nmiPodIP(m, i int) string { return fmt.Sprintf("127.21.%d.%d", m, i+1) }

// nmiLayout is one mode's objects: pod i runs as identity i%identities and service account sa-<identity>.
type nmiLayout struct {
	namespace, node string
	mode            int
	pods            int
	identities      int
}

func (l nmiLayout) identity(i int) int { return i % l.identities }

func (b *bench) nmiLoad(ctx context.Context) (*NMILoadResult, error) {
	o := b.o.NMILoad
	o.defaults()
	if o.Pods > 254 {
		return nil, fmt.Errorf("--nmi-pods %d: at most 254 (one loopback /24 per mode)", o.Pods)
	}
	agent := o.Agent
	if len(agent) == 0 {
		bin := filepath.Join(testenv.ModuleRoot(), "bin", "acrpull-nmi")
		build := exec.Command("go", "build", "-o", bin, "./cmd/acrpull-nmi")
		build.Dir = testenv.ModuleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building acrpull-nmi: %v: %s", err, out)
		}
		agent = []string{bin}
	}
	for k := range o.Identities {
		// AssignedToVM: the fake's IMDS answers for them from the agent's (unplaced) address, as the node's IMDS
		// answers for identities on the node's scale set.
		b.cloud.AddIdentity(azurefake.Identity{ClientID: nmiClientID(k), ResourceID: nmiResourceID(k), TenantID: tenantID, AssignedToVM: true})
	}
	res := &NMILoadResult{Pods: o.Pods, Identities: o.Identities, Rate: o.Rate, DurationSeconds: o.Duration.Seconds()}
	for m, mode := range o.Modes {
		l, err := b.nmiLoadObjects(ctx, o, mode, m)
		if err != nil {
			return res, fmt.Errorf("%s mode: %w", mode, err)
		}
		source := map[string]string{"federation": "federation", "standard": "imds"}[mode]
		if source == "" {
			return res, fmt.Errorf("unknown nmi mode %q (federation, standard)", mode)
		}
		// Classic standard mode follows the assignment records; federation trades pod-bound service-account tokens.
		// No redirect (the bench reaches the agent on its port), no probe or metrics listeners (nothing scrapes).
		args := slices.Concat(agent, []string{"--token-source=" + source, "--operation-mode=standard", "--redirect=false",
			"--allow-network-plugin-kubenet=true", "--tenant-id=" + tenantID, "--kubeconfig=" + b.env.KubeconfigPath,
			"--http-probe-port=0", "--prometheus-port=0"})
		run, err := b.nmiAgentRun(ctx, o, l, "acrpull-nmi", mode, args, nil)
		if run != nil {
			res.Runs = append(res.Runs, run)
		}
		if err != nil {
			return res, fmt.Errorf("acrpull-nmi, %s mode: %w", mode, err)
		}
		if mode == "standard" && o.Upstream != "" {
			run, err := b.upstreamNMIRun(ctx, o, l)
			if run != nil {
				res.Runs = append(res.Runs, run)
			}
			if err != nil {
				return res, fmt.Errorf("upstream nmi, standard mode: %w", err)
			}
		}
	}
	return res, nil
}

// nmiLoadObjects creates a mode's namespace, node, service accounts, identities, bindings and Running pods; in
// standard mode also the assignment records an assignment controller writes once the identities are on the node.
func (b *bench) nmiLoadObjects(ctx context.Context, o NMILoadOptions, mode string, m int) (nmiLayout, error) {
	l := nmiLayout{namespace: "nmi-" + mode, node: "nmi-node-" + mode, mode: m, pods: o.Pods, identities: o.Identities}
	if err := b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.namespace}}); err != nil {
		return l, err
	}
	if err := b.c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: l.node}}); err != nil {
		return l, err
	}
	var identities []aadv1.AzureIdentity
	var bindings []aadv1.AzureIdentityBinding
	for k := range o.Identities {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace, Name: fmt.Sprintf("sa-%d", k)}}
		if err := b.c.Create(ctx, sa); err != nil {
			return l, err
		}
		id := aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace, Name: fmt.Sprintf("nmi-id-%d", k)},
			Spec: aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: nmiClientID(k), ResourceID: nmiResourceID(k)}}
		if err := b.c.Create(ctx, &id); err != nil {
			return l, err
		}
		binding := aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace, Name: id.Name + "-binding"},
			Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: id.Name, Selector: id.Name}}
		if err := b.c.Create(ctx, &binding); err != nil {
			return l, err
		}
		identities, bindings = append(identities, id), append(bindings, binding)
		if mode == "federation" {
			// Each identity trusts its application's service account, as a workload identity setup has it.
			b.cloud.AddFederatedCredential(nmiClientID(k), azurefake.FederatedCredential{Issuer: testenv.Issuer,
				Subject: fmt.Sprintf("system:serviceaccount:%s:%s", l.namespace, sa.Name), Audiences: []string{"api://AzureADTokenExchange"}})
		}
	}
	pods := make([]corev1.Pod, o.Pods)
	err := parallel(b.o.Workers, o.Pods, func(i int) error {
		k := l.identity(i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace, Name: fmt.Sprintf("app-%03d", i),
				Labels: map[string]string{aadv1.PodLabel: fmt.Sprintf("nmi-id-%d", k)}},
			Spec: corev1.PodSpec{NodeName: l.node, ServiceAccountName: fmt.Sprintf("sa-%d", k),
				Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		if err := b.c.Create(ctx, pod); err != nil {
			return err
		}
		ip := nmiPodIP(m, i)
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		if err := b.c.Status().Update(ctx, pod); err != nil {
			return err
		}
		pods[i] = *pod
		return nil
	})
	if err != nil || mode != "standard" {
		return l, err
	}
	// The records acrpull's assignment controller would write (its own planning function), already Assigned: this
	// scenario measures the agent, not the assignment.
	for _, rec := range mic.Desired(pods, bindings, identities, false) {
		rec.Status.Status = aadv1.AssignedIDAssigned
		if err := b.c.Create(ctx, &rec); err != nil {
			return l, err
		}
	}
	return l, nil
}

// agentProcess is a node agent running as its own process, with its output in a file.
type agentProcess struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func (b *bench) startAgentProcess(name string, args, extraEnv []string) (*agentProcess, error) {
	caFile := filepath.Join(b.dir, "ca.pem")
	if err := os.WriteFile(caFile, b.cloud.CACertPEM(), 0o644); err != nil {
		return nil, err
	}
	// The log outlives the bench (as the podidentity scenario's), so a run's refusals can be read afterwards.
	logFile, err := os.Create(filepath.Join(os.TempDir(), "acrpull-bench-nmi-"+name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	proxy := b.cloud.ProxyURL().String()
	// Azure (Entra ID over HTTPS, IMDS over plain HTTP) through the fake's proxy, as production code reaches it; the
	// apiserver directly.
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+b.env.KubeconfigPath, "HTTPS_PROXY="+proxy, "HTTP_PROXY="+proxy,
		"NO_PROXY=127.0.0.1,localhost", "SSL_CERT_FILE="+caFile), extraEnv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	p := &agentProcess{cmd: cmd, exited: make(chan struct{}), logPath: logFile.Name()}
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(p.exited) }()
	return p, nil
}

// stop interrupts the agent and waits for it, killing it after 10 s.
func (p *agentProcess) stop() { interruptThenKill(p.cmd.Process, p.exited) }

// nmiAgentRun starts an agent for l's node listening on a free loopback port, waits until it serves pod 0, warms
// it up with one request per pod, then measures the open-loop window.
func (b *bench) nmiAgentRun(ctx context.Context, o NMILoadOptions, l nmiLayout, agentName, mode string, args, extraEnv []string) (*NMIAgentRun, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	args = slices.Concat(args, []string{"--node=" + l.node, "--nmi-listen-address=127.0.0.1", "--nmi-port=" + strconv.Itoa(port)})
	run := &NMIAgentRun{Agent: agentName, Mode: mode, Errors: map[string]int{}}
	run.LoadAverage[0] = loadAverage()
	b.logf("nmi: %s, %s mode: %s", agentName, mode, strings.Join(args, " "))
	b.cloud.ResetCounts()
	proc, err := b.startAgentProcess(fmt.Sprintf("%s-%s", strings.ReplaceAll(agentName, " ", "-"), mode), args, extraEnv)
	if err != nil {
		return nil, err
	}
	b.logf("nmi: %s, %s mode: its log is %s", agentName, mode, proc.logPath)
	defer proc.stop()
	pods := newPodClients(l, port)
	defer pods.close()
	if err := waitServing(ctx, proc, pods); err != nil {
		return nil, err
	}

	// Warm-up: every pod asks once, all at once, as pods starting together would; the caches fill.
	first := make([]float64, l.pods)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range l.pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			outcome := pods.ask(ctx, i)
			first[i] = float64(time.Since(start).Microseconds()) / 1000
			if outcome != "" {
				mu.Lock()
				run.WarmupErrors++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	run.FirstToken = summarize(first)
	run.AzureRequestsWarmup = azureCounts(b.cloud)
	b.logf("nmi: %s, %s mode: warm, first token p50 %.1f ms, max %.1f ms; %d requests at %g/s for %s",
		agentName, mode, run.FirstToken.P50, run.FirstToken.Max, int(o.Rate*o.Duration.Seconds()), o.Rate, o.Duration)

	pid := proc.cmd.Process.Pid
	// Idle: what the processes spend with no request at all (watches, leases, the GC), subtracted from the window's
	// CPU for the net cost of a request; at low rates it would otherwise dominate.
	idle := b.processCPUOf(pid)
	time.Sleep(nmiIdleWindow)
	run.IdleCPUMillisPerSecond = map[string]float64{}
	for k, v := range cpuSpent(idle, b.processCPUOf(pid)) {
		run.IdleCPUMillisPerSecond[k] = v * 1000 / nmiIdleWindow.Seconds()
	}

	b.cloud.ResetCounts()
	cpuBefore := b.processCPUOf(pid)
	apiBefore, err := b.apiserverRequestsOf(ctx, nmiAgentResources, nil)
	if err != nil {
		return nil, err
	}
	n := int(o.Rate * o.Duration.Seconds())
	outcomes := make([]string, n)
	latencies := make([]float64, n)
	var lastDone time.Time
	var doneMu sync.Mutex
	start := time.Now().Add(50 * time.Millisecond)
	pacer := openLoop{rate: o.Rate, clock: clock.RealClock{}}
	fired, lag := pacer.run(ctx, start, n, func(k int, due time.Time) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcomes[k] = pods.ask(ctx, k%l.pods)
			done := time.Now()
			latencies[k] = float64(done.Sub(due).Microseconds()) / 1000
			doneMu.Lock()
			if done.After(lastDone) {
				lastDone = done
			}
			doneMu.Unlock()
		}()
	})
	sentSpan := time.Since(start)
	wg.Wait()
	cpu := cpuSpent(cpuBefore, b.processCPUOf(pid))
	cpuWindow := time.Since(start).Seconds()
	apiAfter, err := b.apiserverRequestsOf(ctx, nmiAgentResources, nil)
	if err != nil {
		return nil, err
	}
	run.AzureRequestsWindow = azureCounts(b.cloud)
	run.ApiserverRequestsWindow = diffWrites(apiBefore, apiAfter)
	run.AgentPeakRSSMiB = mib(procStatusOf(pid, "VmHWM"))
	run.LoadAverage[1] = loadAverage()

	var ok []float64
	for k := range fired {
		switch outcomes[k] {
		case "":
			ok = append(ok, latencies[k])
			run.Answered++
		case "timeout", "transport error", "reading the answer", "request":
			run.Errors[outcomes[k]]++
		default:
			run.Errors[outcomes[k]]++
			run.Answered++
		}
	}
	run.Requests, run.OK, run.Latency = fired, len(ok), summarize(ok)
	run.MaxSendLagMs = float64(lag.Microseconds()) / 1000
	if fired > 1 && sentSpan > 0 {
		run.SentRate = float64(fired-1) / sentSpan.Seconds()
	}
	if window := lastDone.Sub(start).Seconds(); window > 0 {
		run.AnsweredRate = float64(run.Answered) / window
	}
	run.CPUSeconds = cpu
	if run.Answered > 0 {
		run.AgentCPUPerRequestMicros = cpu["agent"] / float64(run.Answered) * 1e6
		run.ApiserverCPUPerRequestMicros = cpu["kube-apiserver"] / float64(run.Answered) * 1e6
		net := func(proc string) float64 {
			return max(0, cpu[proc]-run.IdleCPUMillisPerSecond[proc]/1000*cpuWindow) / float64(run.Answered) * 1e6
		}
		run.AgentNetCPUPerRequestMicros, run.ApiserverNetCPUPerRequestMicros = net("agent"), net("kube-apiserver")
	}
	b.logf("nmi: %s, %s mode: %d/%d OK, p50 %.1f ms, p99 %.1f ms, max %.1f ms, agent CPU %.0f µs/request",
		agentName, mode, run.OK, run.Requests, run.Latency.P50, run.Latency.P99, run.Latency.Max, run.AgentCPUPerRequestMicros)
	select {
	case <-proc.exited:
		return run, fmt.Errorf("the agent exited during the run; log in %s", proc.logPath)
	default:
	}
	return run, nil
}

// processCPUOf is processCPU with the agent's (pid) as "agent" instead of a controller's.
func (b *bench) processCPUOf(pid int) map[string]float64 {
	cpu := b.processCPU()
	delete(cpu, "controller")
	cpu["agent"] = cpuSeconds(pid)
	return cpu
}

// waitServing waits until the agent answers pod 0 with a token: its caches are synced and it can reach Azure.
func waitServing(ctx context.Context, proc *agentProcess, pods *podClients) error {
	deadline := time.Now().Add(2 * time.Minute)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-proc.exited:
			return fmt.Errorf("the agent exited at start; log in %s", proc.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if last = pods.ask(ctx, 0); last == "" {
			return nil
		}
	}
	return fmt.Errorf("the agent did not serve a token within 2 minutes (last: %s); log in %s", last, proc.logPath)
}

// nmiAgentResources are the apiserver resources whose requests the nmi scenario reports.
var nmiAgentResources = []string{"pods", "serviceaccounts", "azureassignedidentities", "azureidentities", "azureidentitybindings",
	"azurepodidentityexceptions", "secrets"}

// podClients are the pods' HTTP clients: each connects from its pod's address, with keep-alive as an SDK's client.
type podClients struct {
	base      string
	clients   []*http.Client
	clientIDs []string
}

func newPodClients(l nmiLayout, port int) *podClients {
	p := &podClients{base: "http://127.0.0.1:" + strconv.Itoa(port)}
	for i := range l.pods {
		dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(nmiPodIP(l.mode, i))}}
		t := &http.Transport{Proxy: nil, DialContext: dialer.DialContext, MaxIdleConnsPerHost: 32, IdleConnTimeout: time.Minute}
		p.clients = append(p.clients, &http.Client{Transport: t, Timeout: nmiRequestTimeout})
		p.clientIDs = append(p.clientIDs, nmiClientID(l.identity(i)))
	}
	return p
}

func (p *podClients) close() {
	for _, c := range p.clients {
		c.CloseIdleConnections()
	}
}

// ask sends pod i's token request for its identity and returns "" for a 200 with a token, otherwise what went wrong
// (the status, or the transport's failure).
func (p *podClients) ask(ctx context.Context, i int) string {
	// Each identity's pods name it, as an SDK configured with a user-assigned identity's client ID does.
	q := url.Values{"api-version": {"2018-02-01"}, "resource": {nmiLoadResource}, "client_id": {p.clientIDs[i]}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/metadata/identity/oauth2/token?"+q.Encode(), nil)
	if err != nil {
		return "request: " + err.Error()
	}
	req.Header.Set("Metadata", "true")
	resp, err := p.clients[i].Do(req)
	if err != nil {
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return "timeout"
		}
		return "transport error"
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "reading the answer"
	}
	if resp.StatusCode != http.StatusOK {
		return strconv.Itoa(resp.StatusCode)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		return "200 without a token"
	}
	return ""
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// loadAverage is /proc/loadavg's 1-minute figure.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseFloat(strings.Fields(string(data))[0], 64)
	return v
}

func printNMILoad(row func(k string, format string, args ...any), r *NMILoadResult) {
	if r == nil {
		return
	}
	row("nmi: load", "%d pods of one node, %g token requests/s in all (open loop), %.0f s window, %d identities",
		r.Pods, r.Rate, r.DurationSeconds, r.Identities)
	for _, run := range r.Runs {
		k := fmt.Sprintf("nmi: %s %s", run.Agent, run.Mode)
		row(k+": latency p50/p99/max", "%.1f / %.1f / %.1f ms (%d of %d sent OK, %d answered; errors %v)", run.Latency.P50, run.Latency.P99,
			run.Latency.Max, run.OK, run.Requests, run.Answered, run.Errors)
		row(k+": rate sent / answered", "%.0f/s / %.0f/s (pacer lag at worst %.1f ms)", run.SentRate, run.AnsweredRate, run.MaxSendLagMs)
		row(k+": CPU per answered request", "agent %.0f µs, apiserver %.0f µs (net of idle: %.0f µs, %.0f µs); CPU seconds %s",
			run.AgentCPUPerRequestMicros, run.ApiserverCPUPerRequestMicros, run.AgentNetCPUPerRequestMicros,
			run.ApiserverNetCPUPerRequestMicros, sortedMap(run.CPUSeconds))
		row(k+": idle CPU", "%s ms/s", sortedMap(run.IdleCPUMillisPerSecond))
		row(k+": agent peak RSS", "%.0f MiB", run.AgentPeakRSSMiB)
		row(k+": first token p50/max", "%.1f / %.1f ms (warm-up errors %d)", run.FirstToken.P50, run.FirstToken.Max, run.WarmupErrors)
		row(k+": Azure requests warm-up / window", "%s / %s", sortedMap(run.AzureRequestsWarmup), sortedMap(run.AzureRequestsWindow))
		row(k+": apiserver requests in window", "%s", sortedMap(run.ApiserverRequestsWindow))
		row(k+": load average 1m before/after", "%.2f / %.2f", run.LoadAverage[0], run.LoadAverage[1])
	}
}

// upstreamNMIRun measures aad-pod-identity's nmi in standard mode on l's pods and records. Upstream always writes its
// redirect with iptables (it exits when it cannot) and has no flag to skip it; so it is given an iptables that runs
// the real one inside a network namespace the bench creates for it and deletes afterwards, where the rules it writes
// touch nothing of the host. The bench reaches it directly on its port, as it reaches acrpull's agent.
func (b *bench) upstreamNMIRun(ctx context.Context, o NMILoadOptions, l nmiLayout) (*NMIAgentRun, error) {
	ns := fmt.Sprintf("acrpull-bench-%d", os.Getpid())
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("creating network namespace %s for upstream's iptables (needs root and iproute2): %v: %s", ns, err, out)
	}
	defer func() { _ = exec.Command("ip", "netns", "delete", ns).Run() }()
	shimDir := filepath.Join(b.dir, "upstream-iptables")
	if err := os.MkdirAll(shimDir, 0o755); err != nil {
		return nil, err
	}
	// The real iptables by its path: inside `ip netns exec` the PATH still starts with this shim.
	realIPTables, err := exec.LookPath("iptables")
	if err != nil {
		return nil, fmt.Errorf("upstream's NMI needs iptables (hack/install-netns-tools.sh installs it): %w", err)
	}
	calls := filepath.Join(shimDir, "calls.log")
	shim := fmt.Sprintf("#!/bin/sh\necho \"$*\" >>%s\nexec ip netns exec %s %s \"$@\"\n", calls, ns, realIPTables)
	if err := os.WriteFile(filepath.Join(shimDir, "iptables"), []byte(shim), 0o755); err != nil {
		return nil, err
	}
	defer func() {
		data, _ := os.ReadFile(calls)
		_ = os.WriteFile(filepath.Join(os.TempDir(), "acrpull-bench-nmi-upstream-iptables-calls.log"), data, 0o644)
		b.logf("nmi: upstream ran iptables %d times in its namespace (calls in %s)", strings.Count(string(data), "\n"),
			filepath.Join(os.TempDir(), "acrpull-bench-nmi-upstream-iptables-calls.log"))
	}()
	probe, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	metrics, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	// Upstream's defaults otherwise; its probe and metrics ports cannot be turned off (they listen on every
	// address), so they get free ports.
	args := []string{o.Upstream, "--operation-mode=standard", "--allow-network-plugin-kubenet=true",
		"--http-probe-port=" + strconv.Itoa(probe), "--prometheus-port=" + strconv.Itoa(metrics)}
	return b.nmiAgentRun(ctx, o, l, "aad-pod-identity nmi", "standard", args, []string{"PATH=" + shimDir + ":" + os.Getenv("PATH")})
}
