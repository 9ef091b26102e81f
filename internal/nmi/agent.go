/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/healthprobe"
	"github.com/acrpull/acrpull/internal/processmanager"
	"github.com/acrpull/acrpull/internal/tokencache"
)

// Options configure the agent.
type Options struct {
	// NodeName is the node the agent serves; only its pods are watched.
	NodeName string
	// Listener receives redirected requests; nil listens on ListenAddr.
	Listener   net.Listener
	ListenAddr string
	// MetricsAddr and ProbeAddr are the metrics and health endpoints ("0" disables).
	MetricsAddr string
	ProbeAddr   string

	Config Config
	// Type0Source is SourceAuto (default), SourceFederation or SourceIMDS.
	Type0Source string
	// FollowAssignments makes the agent follow an assignment controller's records (classic "standard" mode); off,
	// identities of the imds source are taken to be on the node already (managed mode).
	FollowAssignments bool
	// AssignmentCreatedWait and AssignmentTotalWait bound the wait for a pod's record to appear and to be Assigned
	// (default 80 s and 100 s, as upstream's retry counts and interval give).
	AssignmentCreatedWait, AssignmentTotalWait time.Duration
	// AssignmentGrace is how long after a pod's creation the auto source waits for its record (default 10 s).
	AssignmentGrace time.Duration
	// ServiceAccountAudience is the audience of the pod-bound tokens presented to Entra ID.
	ServiceAccountAudience string
	// DefaultTenantID and Cloud serve identities that do not name their tenant and authority.
	DefaultTenantID string
	Cloud           azauth.Cloud
	// AllowedAuthorityHosts are authorities identities' spec.adEndpoint may name besides the known clouds' and
	// Cloud's (see azauth.NewAuthorityHosts for the forms).
	AllowedAuthorityHosts []string
	// AllowCrossNamespaceSecrets lets identities name Secrets in other namespaces (upstream's behaviour).
	AllowCrossNamespaceSecrets bool
	// IMDSEndpoint is the node's instance metadata service.
	IMDSEndpoint string
	// PodLookupAttempts and PodLookupInterval bound the wait for a new pod to reach the cache.
	PodLookupAttempts int
	PodLookupInterval time.Duration

	// AzureHTTPClient carries Azure requests; nil honours HTTPS_PROXY and SSL_CERT_FILE.
	AzureHTTPClient  *http.Client
	AzureCallTimeout time.Duration
	Clock            clock.Clock
	MetricsRegistry  prometheus.Registerer

	// UserAgentSuffix is appended to the User-Agent of Entra ID and apiserver requests (upstream's
	// --custom-user-agent), so the operators of a tenant or cluster can tell this agent's requests apart.
	UserAgentSuffix string
}

// Agent is the node agent: a controller-runtime manager holding caches of this node's pods and of the pod identity
// objects, with the metadata API server as one of its runnables. Its AddReadyzCheck adds to the checks its probe
// server answers /readyz with (upstream's, internal/healthprobe); call it before Start.
type Agent struct {
	manager.Manager
	// Handler is the metadata API, also served on the listener once the caches have synced.
	Handler http.Handler
}

// withDefaults fills in what opts leave unset: the real clock and controller-runtime's metrics registry, the auto
// token source, upstream's assignment waits, the federation audience, the public cloud, the node's IMDS address and
// four pod lookups 300 ms apart.
func (opts Options) withDefaults() Options {
	opts.Clock, opts.MetricsRegistry = processmanager.OrDefaults(opts.Clock, opts.MetricsRegistry)
	if opts.Type0Source == "" {
		opts.Type0Source = SourceAuto
	}
	if opts.AssignmentCreatedWait == 0 {
		opts.AssignmentCreatedWait = 80 * time.Second
	}
	if opts.AssignmentTotalWait == 0 {
		opts.AssignmentTotalWait = 100 * time.Second
	}
	if opts.AssignmentGrace == 0 {
		opts.AssignmentGrace = 10 * time.Second
	}
	if opts.ServiceAccountAudience == "" {
		opts.ServiceAccountAudience = "api://AzureADTokenExchange"
	}
	if opts.Cloud.AuthorityHost == "" {
		opts.Cloud = azauth.PublicCloud
	}
	if opts.IMDSEndpoint == "" {
		opts.IMDSEndpoint = "http://169.254.169.254"
	}
	if opts.PodLookupAttempts == 0 {
		opts.PodLookupAttempts, opts.PodLookupInterval = 4, 300*time.Millisecond
	}
	if opts.AzureHTTPClient == nil {
		opts.AzureHTTPClient = &http.Client{Transport: http.DefaultTransport}
	}
	return opts
}

// validate refuses options the agent cannot run with, saying which flag to fix.
func (opts Options) validate() error {
	if opts.NodeName == "" {
		return errors.New("the node name is required (--node, or env NODE_NAME from the downward API)")
	}
	if opts.Type0Source != SourceAuto && opts.Type0Source != SourceFederation && opts.Type0Source != SourceIMDS {
		return fmt.Errorf("unknown token source %q: use %s, %s or %s", opts.Type0Source, SourceAuto, SourceFederation, SourceIMDS)
	}
	if opts.Config.MaxConcurrentRequestsPerPod < 0 {
		return fmt.Errorf("the bound on a pod's requests in flight (--max-concurrent-requests-per-pod) is %d: use 0 for none, or more",
			opts.Config.MaxConcurrentRequestsPerPod)
	}
	return nil
}

// processOptions are how the agent's process serves: /healthz answered as upstream's NMI did (New adds the
// readiness check), no leader election (one agent a node), caches of this node's pods and records only, Secrets
// never cached, and the token cache swept every minute.
func (opts Options) processOptions(tokens processmanager.Sweeper) processmanager.Options {
	return processmanager.Options{
		MetricsAddr:  opts.MetricsAddr,
		ProbeAddr:    opts.ProbeAddr,
		Healthz:      map[string]healthz.Checker{"ping": healthz.Ping},
		ProbeHandler: healthprobe.Handler,
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{
				// Only this node's pods and assignment records: the agent's memory does not grow with the cluster.
				&corev1.Pod{}:                  {Field: fields.OneTermEqualSelector("spec.nodeName", opts.NodeName)},
				&aadv1.AzureAssignedIdentity{}: {Label: labels.SelectorFromSet(labels.Set{aadv1.NodeNameLabel: opts.NodeName})},
			},
		},
		Client: client.Options{Cache: &client.CacheOptions{
			// Secrets are read by name when an identity needs one, never cached: no list or watch of Secrets.
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
		// Tokens of pods long gone would otherwise stay in memory.
		TokenCache: tokens,
		SweepEvery: time.Minute,
	}
}

// New builds the agent.
func New(cfg *rest.Config, opts Options) (*Agent, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	authorities, err := azauth.NewAuthorityHosts(append(slices.Clone(opts.AllowedAuthorityHosts), opts.Cloud.AuthorityHost)...)
	if err != nil {
		return nil, err
	}
	imds, err := url.Parse(opts.IMDSEndpoint)
	if err != nil {
		return nil, fmt.Errorf("IMDS endpoint %q: %w", opts.IMDSEndpoint, err)
	}
	if opts.UserAgentSuffix != "" {
		cfg = rest.CopyConfig(cfg)
		cfg.UserAgent = cmp.Or(cfg.UserAgent, rest.DefaultKubernetesUserAgent()) + " " + opts.UserAgentSuffix
	}
	tokens := tokencache.New(opts.Clock, nil)
	mgr, err := processmanager.New(cfg, opts.processOptions(tokens))
	if err != nil {
		return nil, err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, PodIPIndex, IndexPodIPs); err != nil {
		return nil, err
	}
	metrics := NewMetrics(opts.MetricsRegistry)
	azure := azauth.NewClient(azauth.Options{HTTPClient: opts.AzureHTTPClient, CallTimeout: opts.AzureCallTimeout, Clock: opts.Clock,
		UserAgentSuffix: opts.UserAgentSuffix})
	srv := &Server{
		Config: opts.Config,
		Pods: &PodLocator{Cache: mgr.GetCache(), Live: mgr.GetAPIReader(), Node: opts.NodeName, Attempts: opts.PodLookupAttempts, Interval: opts.PodLookupInterval,
			Metrics: metrics},
		Objects: mgr.GetCache(),
		Kube:    mgr.GetClient(),
		Issuer: &Issuer{
			Azure: azure, Cache: tokens, Clock: opts.Clock, Kube: mgr.GetClient(),
			Type0Source: opts.Type0Source, Audience: opts.ServiceAccountAudience,
			DefaultTenantID: opts.DefaultTenantID, Cloud: opts.Cloud, NodeName: opts.NodeName,
			AuthorityHosts: authorities, AllowCrossNamespaceSecrets: opts.AllowCrossNamespaceSecrets,
			Metrics: metrics,
		},
		Metrics:       metrics,
		Recorder:      mgr.GetEventRecorder("acrpull-nmi"),
		Log:           ctrl.Log.WithName("nmi"),
		Clock:         opts.Clock,
		IMDS:          imds,
		IMDSTransport: opts.AzureHTTPClient.Transport,
	}
	informed := []client.Object{&aadv1.AzureIdentity{}, &aadv1.AzureIdentityBinding{}, &aadv1.AzurePodIdentityException{}}
	if opts.FollowAssignments {
		srv.Issuer.Assignments = &Assignments{Records: mgr.GetCache(), CreatedWait: opts.AssignmentCreatedWait,
			TotalWait: opts.AssignmentTotalWait, Grace: opts.AssignmentGrace, Poll: 50 * time.Millisecond}
		informed = append(informed, &aadv1.AzureAssignedIdentity{})
	}
	// Informers for the identity objects start before the first request, not on it.
	for _, obj := range informed {
		if _, err := mgr.GetCache().GetInformer(context.Background(), obj); err != nil {
			return nil, err
		}
	}
	handler := srv.Handler()
	server := &httpRunnable{handler: handler, log: srv.Log, listener: opts.Listener, addr: opts.ListenAddr, cache: mgr.GetCache(),
		// A token request may wait for the assignment controller for up to AssignmentTotalWait (100 s), after the
		// pod lookup and before the Azure call: the response must still be written after that.
		writeTimeout: opts.AssignmentTotalWait + time.Minute}
	if err := mgr.Add(server); err != nil {
		return nil, err
	}
	// Ready once the metadata API answers: before that, pods' requests would be refused or dropped.
	if err := mgr.AddReadyzCheck("serving", func(*http.Request) error {
		if !server.serving.Load() {
			return errors.New("the metadata API is not serving yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return &Agent{Manager: mgr, Handler: handler}, nil
}

// httpRunnable serves the metadata API once the caches have synced, so the first request finds its pod.
type httpRunnable struct {
	handler  http.Handler
	log      logr.Logger
	listener net.Listener
	addr     string
	cache    cache.Cache
	serving  atomic.Bool
	// writeTimeout bounds a request from the end of its headers to the end of its response.
	writeTimeout time.Duration
}

func (h *httpRunnable) NeedLeaderElection() bool { return false }

func (h *httpRunnable) Start(ctx context.Context) error {
	if !h.cache.WaitForCacheSync(ctx) {
		return errors.New("caches did not sync")
	}
	l := h.listener
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", h.addr); err != nil {
			return fmt.Errorf("listening on %s: %w", h.addr, err)
		}
	}
	// Every pod on the node can open connections here: none may hold one, or the agent's memory, without bound. The
	// request body is bounded by the handler.
	server := &http.Server{
		Handler:           h.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      h.writeTimeout,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(l) }()
	h.serving.Store(true)
	defer h.serving.Store(false)
	h.log.Info("serving the instance metadata API", "address", l.Addr().String())
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return server.Shutdown(shutdown)
	case err := <-errc:
		return err
	}
}
