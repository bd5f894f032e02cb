package deploy_test

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/ferryrtc/ferry/config"
)

const (
	kubeDir   = "kubernetes"
	chartDir  = "helm/ferry"
	namespace = "ferry"
	// The values the tests give the downward API's fields.
	testNodeName = "node-a"
	testHostIP   = "192.0.2.10"
	testPodName  = "ferry-x7k2p"
)

// newTyped returns an empty object of the Kubernetes API type for apiVersion
// and kind. A kind the deployment is not expected to use is an error, so
// that a typo in apiVersion or kind cannot slip through undecoded.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q of apiVersion %q", kind, apiVersion)
}

// decodeStrict decodes one YAML document into its API type. Unknown and
// duplicate fields, and values of the wrong type, are errors.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	obj, err := newTyped(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	if err := unmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%s has no metadata", tm.Kind)
	}
	if errs := validation.IsDNS1123Subdomain(m.GetName()); len(errs) > 0 {
		return nil, fmt.Errorf("%s %q: name: %s", tm.Kind, m.GetName(), strings.Join(errs, "; "))
	}
	return obj, nil
}

// unmarshalStrict decodes a YAML document as the API server decodes a
// request with strict field validation: YAML to JSON (duplicate keys are
// errors, and unquoted YAML 1.1 booleans such as "no" stay booleans, as
// kubectl sends them), then JSON into the Go type with field names matched
// case-sensitively and unknown or duplicate fields reported.
// (encoding/json's DisallowUnknownFields alone would accept
// readOnlyRootFileSystem for readOnlyRootFilesystem.)
func unmarshalStrict(doc []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, into)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// splitDocs splits a YAML stream into its documents, dropping empty ones
// (only comments, or nothing).
func splitDocs(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split YAML documents: %w", err)
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if v != nil {
			docs = append(docs, doc)
		}
	}
}

// objects is a decoded set of manifests.
type objects []any

// decodeAll strictly decodes every document of a YAML stream.
func decodeAll(data []byte) (objects, error) {
	docs, err := splitDocs(data)
	if err != nil {
		return nil, err
	}
	var out objects
	for i, doc := range docs {
		obj, err := decodeStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		out = append(out, obj)
	}
	return out, nil
}

// ofType returns the objects of type T.
func ofType[T any](s objects) []T {
	var out []T
	for _, o := range s {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// secretData maps each Secret's name to its keys and values, stringData
// over data, as the API server merges them.
func (s objects) secretData() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, sec := range ofType[*corev1.Secret](s) {
		m := map[string]string{}
		for k, v := range sec.Data {
			m[k] = string(v)
		}
		maps.Copy(m, sec.StringData)
		out[sec.Name] = m
	}
	return out
}

// workload is a DaemonSet or Deployment, reduced to what the checks need.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	template   *corev1.PodTemplateSpec
}

func (s objects) workloads() []workload {
	var out []workload
	for _, o := range s {
		switch w := o.(type) {
		case *appsv1.DaemonSet:
			out = append(out, workload{"DaemonSet", w.Name, w.Spec.Selector, &w.Spec.Template})
		case *appsv1.Deployment:
			out = append(out, workload{"Deployment", w.Name, w.Spec.Selector, &w.Spec.Template})
		}
	}
	return out
}

// ferryWorkloads returns the workloads that run ferry.
func (s objects) ferryWorkloads() []workload {
	var out []workload
	for _, w := range s.workloads() {
		if ferryContainer(w.template) != nil {
			out = append(out, w)
		}
	}
	return out
}

func ferryContainer(t *corev1.PodTemplateSpec) *corev1.Container {
	for i := range t.Spec.Containers {
		if t.Spec.Containers[i].Name == "ferry" {
			return &t.Spec.Containers[i]
		}
	}
	return nil
}

// envRef matches a $(NAME) reference in an env value or argument.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// resolveEnv computes a container's environment as the kubelet would:
// literal values (with $(NAME) references to earlier variables expanded),
// downward API fields (as testNodeName, testHostIP and testPodName), and
// Secret keys from secrets. A missing Secret key that is not optional is an
// error; envFrom is refused, since it could inject any variable.
func resolveEnv(c *corev1.Container, secrets map[string]map[string]string) (map[string]string, []string, error) {
	if len(c.EnvFrom) > 0 {
		return nil, nil, errors.New("envFrom: name each variable in env instead")
	}
	vals := map[string]string{}
	var environ []string
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = envRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if x, ok := vals[envRef.FindStringSubmatch(ref)[1]]; ok {
					return x
				}
				return ref
			})
		case e.ValueFrom.FieldRef != nil:
			switch p := e.ValueFrom.FieldRef.FieldPath; p {
			case "spec.nodeName":
				v = testNodeName
			case "status.hostIP", "status.podIP":
				v = testHostIP
			case "metadata.name":
				v = testPodName
			default:
				return nil, nil, fmt.Errorf("env %s: unexpected fieldPath %q", e.Name, p)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			x, ok := secrets[ref.Name][ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, nil, fmt.Errorf("env %s: Secret %q has no key %q", e.Name, ref.Name, ref.Key)
			}
			v = x
		default:
			return nil, nil, fmt.Errorf("env %s: unexpected valueFrom", e.Name)
		}
		if _, dup := vals[e.Name]; dup {
			return nil, nil, fmt.Errorf("env %s is set twice", e.Name)
		}
		vals[e.Name] = v
		environ = append(environ, e.Name+"="+v)
	}
	return vals, environ, nil
}

// configFile finds the ConfigMap key that a container's --config path is
// mounted from.
func configFile(s objects, pod *corev1.PodSpec, c *corev1.Container) (string, error) {
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		return "", fmt.Errorf("args %q name no --config file", c.Args)
	}
	file := c.Args[i+1]
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok || strings.Contains(rel, "/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			key := rel
			if len(v.ConfigMap.Items) > 0 {
				key = ""
				for _, it := range v.ConfigMap.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
			}
			for _, cm := range ofType[*corev1.ConfigMap](s) {
				if cm.Name == v.ConfigMap.Name {
					if data, ok := cm.Data[key]; ok {
						return data, nil
					}
				}
			}
			return "", fmt.Errorf("%s: ConfigMap %q has no key %q", file, v.ConfigMap.Name, key)
		}
	}
	return "", fmt.Errorf("%s is not on a ConfigMap volume", file)
}

// loadConfig runs ferry's own loader and validation on a config file and
// environment, as ferry serve does.
func loadConfig(t *testing.T, data string, environ []string) (config.Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(p, nil, environ)
	if err != nil {
		return cfg, fmt.Errorf("load: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("validate: %w", err)
	}
	return cfg, nil
}

// ferryPod is what checkFerryPod found out about one ferry workload.
type ferryPod struct {
	w   workload
	cfg config.Config
}

// checkFerryPod checks a ferry workload against what ferry and the
// deployment need, and returns the configuration it runs with.
// external are Secrets the manifests use but do not hold.
func checkFerryPod(t *testing.T, s objects, w workload, external map[string]map[string]string) (ferryPod, error) {
	t.Helper()
	pod := &w.template.Spec
	c := ferryContainer(w.template)
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !pod.HostNetwork {
		fail("hostNetwork is not true: the relay ports need the node's network")
	}
	if pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		fail("dnsPolicy %q, want ClusterFirstWithHostNet (Service names such as the Redis)", pod.DNSPolicy)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		fail("enableServiceLinks must be false: ferry refuses unknown FERRY_* variables such as FERRY_SERVICE_HOST")
	}
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.template.Labels)) {
		fail("selector %v does not select the pod template's labels %v (%v)", w.selector, w.template.Labels, err)
	}

	secrets := s.secretData()
	maps.Copy(secrets, external)
	_, environ, err := resolveEnv(c, secrets)
	if err != nil {
		return ferryPod{}, err
	}
	data, err := configFile(s, pod, c)
	if err != nil {
		return ferryPod{}, err
	}
	cfg, err := loadConfig(t, data, environ)
	if err != nil {
		return ferryPod{}, fmt.Errorf("ferry's config: %w", err)
	}

	// Secrets stay out of the ConfigMap.
	fileOnly, err := loadConfig(t, data, nil)
	if err != nil {
		return ferryPod{}, fmt.Errorf("the ConfigMap alone: %w", err)
	}
	if len(fileOnly.Auth.Secrets)+len(fileOnly.Auth.Users)+len(fileOnly.HTTP.APIKeys) > 0 ||
		fileOnly.HTTP.AdminToken != "" || fileOnly.Cluster.Redis != "" || fileOnly.Cluster.NonceSecret != "" {
		fail("the ConfigMap holds secrets; take them from a Secret")
	}
	for name, kv := range secrets {
		for k, v := range kv {
			if len(v) >= 8 && strings.Contains(data, v) {
				fail("the ConfigMap holds the value of Secret %s key %s", name, k)
			}
		}
	}
	if cfg.Cluster.NodeID != testNodeName {
		fail("cluster.node-id %q, want the node's name from the downward API", cfg.Cluster.NodeID)
	}
	if len(cfg.Auth.Secrets) == 0 && len(cfg.Auth.Users) == 0 {
		fail("no auth.secrets: every pod would make its own secret and the nodes would not accept each other's credentials")
	}

	// Ports: every listener and the HTTP port are container ports.
	type portKey struct {
		proto corev1.Protocol
		port  int32
	}
	ports := map[portKey]bool{}
	named := map[string]int32{}
	for _, p := range c.Ports {
		if p.HostPort != 0 && p.HostPort != p.ContainerPort {
			fail("port %s: hostPort %d must equal containerPort %d with hostNetwork", p.Name, p.HostPort, p.ContainerPort)
		}
		if p.Name != "" {
			if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
				fail("port name %q: %s", p.Name, strings.Join(errs, "; "))
			}
			if _, dup := named[p.Name]; dup {
				fail("port name %q is used twice", p.Name)
			}
			named[p.Name] = p.ContainerPort
		}
		k := portKey{p.Protocol, p.ContainerPort}
		if ports[k] {
			fail("port %d/%s is declared twice", p.ContainerPort, p.Protocol)
		}
		ports[k] = true
	}
	ls, err := cfg.Listeners()
	if err != nil {
		return ferryPod{}, err
	}
	lowPort := false
	for _, l := range ls {
		proto := corev1.ProtocolTCP
		if l.Transport == config.UDP || l.Transport == config.DTLS {
			proto = corev1.ProtocolUDP
		}
		if !ports[portKey{proto, int32(l.Addr.Port())}] {
			fail("listener %s has no containerPort %d/%s", l, l.Addr.Port(), proto)
		}
		lowPort = lowPort || l.Addr.Port() < 1024
	}
	if cfg.HTTP.Listen == "" {
		return ferryPod{}, errors.New("http.listen is empty: the probes and the Service need the HTTP listener")
	}
	_, hp, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil {
		return ferryPod{}, fmt.Errorf("http.listen: %w", err)
	}
	httpPort, err := strconv.Atoi(hp)
	if err != nil {
		return ferryPod{}, fmt.Errorf("http.listen: %w", err)
	}
	if !ports[portKey{corev1.ProtocolTCP, int32(httpPort)}] {
		fail("http.listen port %d is no containerPort", httpPort)
	}
	lowPort = lowPort || httpPort < 1024
	portOf := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			return named[p.StrVal]
		}
		return p.IntVal
	}

	// Probes: readiness on /readyz (fails while draining), liveness on
	// /healthz (does not), both on the HTTP listener.
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		switch {
		case pr.probe == nil || pr.probe.HTTPGet == nil:
			fail("%s is not an httpGet", pr.name)
		case pr.probe.HTTPGet.Path != pr.path:
			fail("%s path %q, want %s", pr.name, pr.probe.HTTPGet.Path, pr.path)
		case portOf(pr.probe.HTTPGet.Port) != int32(httpPort):
			fail("%s port %s is not http.listen's %d", pr.name, pr.probe.HTTPGet.Port.String(), httpPort)
		}
	}

	// Drain: the preStop hook, then SIGTERM's drain, within the grace period.
	var preStop int64
	switch h := c.Lifecycle; {
	case h == nil || h.PreStop == nil:
		fail("no preStop hook")
	case h.PreStop.Sleep != nil:
		preStop = h.PreStop.Sleep.Seconds
	case h.PreStop.Exec == nil && h.PreStop.HTTPGet == nil:
		fail("preStop hook does nothing")
	}
	need := preStop + int64(cfg.DrainTimeout.Seconds())
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if grace <= need {
		fail("terminationGracePeriodSeconds %d must exceed preStop %ds + drain-timeout %s", grace, preStop, cfg.DrainTimeout)
	}

	// Privileges: capabilities only where they work (root), and only the
	// ones the listeners and the fast path need.
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		return ferryPod{}, errors.New("container securityContext with capabilities is missing")
	}
	privileged := sc.Privileged != nil && *sc.Privileged
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		fail("readOnlyRootFilesystem is not true")
	}
	if !privileged && (sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation) {
		fail("allowPrivilegeEscalation is not false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		fail("capabilities do not drop ALL")
	}
	uid := int64(-1)
	if pod.SecurityContext != nil && pod.SecurityContext.RunAsUser != nil {
		uid = *pod.SecurityContext.RunAsUser
	}
	if sc.RunAsUser != nil {
		uid = *sc.RunAsUser
	}
	if uid < 0 {
		fail("no runAsUser")
	}
	add := sc.Capabilities.Add
	if uid != 0 && len(add) > 0 {
		fail("capabilities %v are added for uid %d, but Kubernetes gives non-root processes none", add, uid)
	}
	if uid != 0 {
		nonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
		if !nonRoot {
			fail("runAsNonRoot is not true for uid %d", uid)
		}
	}
	if lowPort && !privileged && (uid != 0 || !slices.Contains(add, "NET_BIND_SERVICE")) {
		fail("a port below 1024 needs uid 0 with NET_BIND_SERVICE (uid %d, add %v)", uid, add)
	}
	if !lowPort && slices.Contains(add, "NET_BIND_SERVICE") {
		fail("NET_BIND_SERVICE is added but no port is below 1024")
	}
	offload := cfg.Relay.Offload != config.OffloadOff
	if offload && !privileged && (uid != 0 || !slices.Contains(add, "BPF") || !slices.Contains(add, "NET_ADMIN")) {
		fail("relay.offload %q needs uid 0 with BPF and NET_ADMIN (uid %d, add %v)", cfg.Relay.Offload, uid, add)
	}
	if !offload && (slices.Contains(add, "BPF") || slices.Contains(add, "NET_ADMIN") || privileged) {
		fail("relay.offload is off but the container holds BPF, NET_ADMIN or privileged")
	}
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil {
		fail("no seccompProfile")
	}

	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		fail("resources need cpu and memory requests and a memory limit, got %v", c.Resources)
	}

	// TLS: the certificate files are on a Secret volume.
	if cfg.TLS.Cert != "" {
		dir := path.Dir(cfg.TLS.Cert)
		found := false
		for _, m := range c.VolumeMounts {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && m.MountPath == dir && v.Secret != nil && path.Dir(cfg.TLS.Key) == dir {
					found = true
				}
			}
		}
		if !found {
			fail("tls.cert %s and tls.key %s are not on a Secret volume", cfg.TLS.Cert, cfg.TLS.Key)
		}
	}

	// One ferry per node: a Deployment needs the anti-affinity (the
	// DaemonSet has it by construction), and neither may surge.
	switch w.kind {
	case "Deployment":
		if !requiresOnePerNode(w) {
			fail("Deployment lacks a required pod anti-affinity on kubernetes.io/hostname for its own pods")
		}
		d := ofNamed[*appsv1.Deployment](s, w.name)
		if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType &&
			(ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0) {
			fail("Deployment may surge; a second pod on a node cannot bind the ports")
		}
	case "DaemonSet":
		d := ofNamed[*appsv1.DaemonSet](s, w.name)
		if ru := d.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxSurge != nil && ru.MaxSurge.IntValue() != 0 {
			fail("DaemonSet may surge; a second pod on a node cannot bind the ports")
		}
	}
	return ferryPod{w: w, cfg: cfg}, errors.Join(errs...)
}

// ofNamed returns the object of type T named name, or the zero T.
func ofNamed[T metav1.Object](s objects, name string) T {
	for _, o := range ofType[T](s) {
		if o.GetName() == name {
			return o
		}
	}
	var zero T
	return zero
}

// requiresOnePerNode reports whether w's pods repel each other per node.
func requiresOnePerNode(w workload) bool {
	a := w.template.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return false
	}
	for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
		if err == nil && term.TopologyKey == "kubernetes.io/hostname" && !sel.Empty() && sel.Matches(labels.Set(w.template.Labels)) {
			return true
		}
	}
	return false
}

// checkSelectors checks that every Service and PodDisruptionBudget selects
// the pods of some workload, and a Service's named target port exists.
func checkSelectors(s objects) error {
	var errs []error
	pods := s.workloads()
	for _, svc := range ofType[*corev1.Service](s) {
		var hit *workload
		for i, w := range pods {
			if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.template.Labels)) {
				if hit != nil {
					errs = append(errs, fmt.Errorf("Service %s selects both %s and %s", svc.Name, hit.name, w.name))
				}
				hit = &pods[i]
			}
		}
		if hit == nil {
			errs = append(errs, fmt.Errorf("Service %s selects no workload's pods", svc.Name))
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.Type != intstr.String {
				continue
			}
			found := false
			for _, c := range hit.template.Spec.Containers {
				for _, cp := range c.Ports {
					found = found || cp.Name == p.TargetPort.StrVal && cp.Protocol == p.Protocol
				}
			}
			if !found {
				errs = append(errs, fmt.Errorf("Service %s port %s targets %q, which %s has not", svc.Name, p.Name, p.TargetPort.StrVal, hit.name))
			}
		}
	}
	for _, pdb := range ofType[*policyv1.PodDisruptionBudget](s) {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: %w", pdb.Name, err))
			continue
		}
		n := 0
		for _, w := range pods {
			if sel.Matches(labels.Set(w.template.Labels)) {
				n++
				if w.kind == "DaemonSet" && pdb.Spec.MaxUnavailable != nil {
					errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: maxUnavailable on DaemonSet %s's pods (Kubernetes supports it for controllers with a scale only)", pdb.Name, w.name))
				}
			}
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s selects no workload's pods", pdb.Name))
		}
	}
	return errors.Join(errs...)
}

// checkRedis checks that ferry's cluster.redis names a Service of the set
// and, when the Redis runs in the set, its password.
func checkRedis(s objects, p ferryPod, external map[string]map[string]string) error {
	u, err := url.Parse(p.cfg.Cluster.Redis)
	if err != nil {
		return fmt.Errorf("cluster.redis: %w", err)
	}
	host := strings.Split(u.Hostname(), ".")
	if len(host) > 1 && host[1] != namespace {
		return fmt.Errorf("cluster.redis host %s is not in namespace %s", u.Hostname(), namespace)
	}
	svc := ofNamed[*corev1.Service](s, host[0])
	if svc == nil {
		return fmt.Errorf("cluster.redis host %s is no Service of the manifests", u.Hostname())
	}
	if port := u.Port(); !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return strconv.Itoa(int(sp.Port)) == port }) {
		return fmt.Errorf("cluster.redis port %s is not a port of Service %s", port, svc.Name)
	}
	for _, w := range s.workloads() {
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.template.Labels)) {
			continue
		}
		c := &w.template.Spec.Containers[0]
		secrets := s.secretData()
		maps.Copy(secrets, external)
		env, _, err := resolveEnv(c, secrets)
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		i := slices.Index(c.Args, "--requirepass")
		if i < 0 || i+1 >= len(c.Args) {
			return fmt.Errorf("%s runs Redis without --requirepass", w.name)
		}
		pass := envRef.ReplaceAllStringFunc(c.Args[i+1], func(ref string) string { return env[envRef.FindStringSubmatch(ref)[1]] })
		if got, _ := u.User.Password(); pass == "" || got != pass {
			return fmt.Errorf("cluster.redis's password is not the one %s requires", w.name)
		}
		return nil
	}
	return fmt.Errorf("Service %s selects no workload", svc.Name)
}

// readManifests decodes every manifest file of kubernetes/, by file name.
func readManifests(t *testing.T) map[string]objects {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]objects{}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no objects", f)
		}
		out[filepath.Base(f)] = objs
	}
	if len(out) == 0 {
		t.Fatal("no manifests in " + kubeDir)
	}
	return out
}

// join returns the objects of the named files, or of all of them.
func join(m map[string]objects, files ...string) objects {
	if len(files) == 0 {
		files = slices.Sorted(maps.Keys(m))
	}
	var out objects
	for _, f := range files {
		out = append(out, m[f]...)
	}
	return out
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := readManifests(t)
	for f, objs := range m {
		for _, o := range objs {
			mo := o.(metav1.Object)
			if _, isNS := o.(*corev1.Namespace); !isNS && mo.GetNamespace() != namespace {
				t.Errorf("%s: %s is in namespace %q, want %q", f, mo.GetName(), mo.GetNamespace(), namespace)
			}
		}
	}
	if ns := ofNamed[*corev1.Namespace](join(m), namespace); ns == nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s must exist with Pod Security level privileged (hostNetwork)", namespace)
	}
}

func TestStrictDecoderRejects(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(kubeDir, "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	if _, err := decodeAll(b); err != nil {
		t.Fatalf("daemonset.yaml: %v", err)
	}
	tests := []struct {
		name, doc, want string
	}{
		{"misspelt field", strings.Replace(good, "      hostNetwork: true", "      hostNetwrk: true", 1), `unknown field "spec.template.spec.hostNetwrk"`},
		{"field in the wrong case", strings.Replace(good, "readOnlyRootFilesystem:", "readOnlyRootFileSystem:", 1), `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"field at the wrong level", strings.Replace(good, "      dnsPolicy: ClusterFirstWithHostNet", "      dnsPolicy: ClusterFirstWithHostNet\n      replicas: 2", 1), `unknown field "spec.template.spec.replicas"`},
		{"duplicate field", strings.Replace(good, "      hostNetwork: true", "      hostNetwork: true\n      hostNetwork: false", 1), "already set"},
		{"wrong type", strings.Replace(good, "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: soon", 1), "terminationGracePeriodSeconds"},
		{"unknown kind", strings.Replace(good, "kind: DaemonSet", "kind: DaemonSett", 1), `unknown kind "DaemonSett"`},
		{"wrong apiVersion", strings.Replace(good, "apiVersion: apps/v1", "apiVersion: extensions/v1beta1", 1), "unknown kind"},
		{"bad name", strings.Replace(good, "  name: ferry\n", "  name: Ferry_TURN\n", 1), "name:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.doc == good {
				t.Fatal("the edit did not apply")
			}
			_, err := decodeAll([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestManifestWorkloads(t *testing.T) {
	m := readManifests(t)
	all := join(m)
	tests := []struct {
		file, kind string
	}{
		{"daemonset.yaml", "DaemonSet"},
		{"deployment.yaml", "Deployment"},
	}
	var specs []corev1.PodSpec
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ws := m[tt.file].ferryWorkloads()
			if len(ws) != 1 || ws[0].kind != tt.kind {
				t.Fatalf("%s holds %d ferry workloads, want one %s", tt.file, len(ws), tt.kind)
			}
			p, err := checkFerryPod(t, all, ws[0], nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkRedis(all, p, nil); err != nil {
				t.Error(err)
			}
			if p.cfg.Cluster.PublicHost != testHostIP {
				t.Errorf("cluster.public-host %q, want the node IP %s", p.cfg.Cluster.PublicHost, testHostIP)
			}
			if p.cfg.Relay.Offload != config.OffloadOff {
				t.Errorf("relay.offload %q: the plain manifests run as non-root, without the fast path's capabilities", p.cfg.Relay.Offload)
			}
			spec := *ws[0].template.Spec.DeepCopy()
			spec.Affinity = nil
			specs = append(specs, spec)
		})
	}
	if len(specs) == 2 && !reflect.DeepEqual(specs[0], specs[1]) {
		t.Error("daemonset.yaml and deployment.yaml have different pods (affinity aside): keep them the same")
	}
	// The DaemonSet's set, as kustomization.yaml builds it
	// (TestKustomization checks both).
	var files []string
	for f := range m {
		if f != "deployment.yaml" && f != "pdb.yaml" {
			files = append(files, f)
		}
	}
	if err := checkSelectors(join(m, files...)); err != nil {
		t.Error(err)
	}
}

func TestManifestSecretHoldsPlaceholders(t *testing.T) {
	m := readManifests(t)
	data := m["secret.yaml"].secretData()
	if len(data) != 1 {
		t.Fatalf("secret.yaml holds %d Secrets, want 1", len(data))
	}
	for name, kv := range data {
		for k, v := range kv {
			if !strings.Contains(v, "CHANGE-ME") {
				t.Errorf("Secret %s key %s is not a CHANGE-ME placeholder: keep real secrets out of the repository", name, k)
			}
		}
	}
}

// TestConfigCheckCatchesMistakes shows that a key or variable ferry does
// not know fails the manifests' config check.
func TestConfigCheckCatchesMistakes(t *testing.T) {
	all := join(readManifests(t))
	w := all.ferryWorkloads()[0]
	tests := []struct {
		name string
		edit func(cm *corev1.ConfigMap, c *corev1.Container)
		want string
	}{
		{"misspelt key", func(cm *corev1.ConfigMap, _ *corev1.Container) {
			cm.Data["ferry.yaml"] = strings.Replace(cm.Data["ferry.yaml"], "placement-count:", "placement-cnt:", 1)
		}, "cluster.placement-cnt: unknown key"},
		{"bad value", func(cm *corev1.ConfigMap, _ *corev1.Container) {
			cm.Data["ferry.yaml"] = strings.Replace(cm.Data["ferry.yaml"], "drain-timeout: 30s", "drain-timeout: 2h", 1)
		}, "drain-timeout"},
		{"misspelt variable", func(_ *corev1.ConfigMap, c *corev1.Container) {
			c.Env[0].Name = "FERRY_CLUSTER_NODEID"
		}, "FERRY_CLUSTER_NODEID is not a ferry setting"},
		{"secret in the ConfigMap", func(cm *corev1.ConfigMap, _ *corev1.Container) {
			cm.Data["ferry.yaml"] += "auth:\n  secrets: [a-secret-in-the-configmap]\n"
		}, "holds secrets"},
		{"short grace period", func(_ *corev1.ConfigMap, c *corev1.Container) {
			c.Lifecycle.PreStop.Sleep.Seconds = 20
		}, "terminationGracePeriodSeconds"},
		{"readiness on healthz", func(_ *corev1.ConfigMap, c *corev1.Container) {
			c.ReadinessProbe.HTTPGet.Path = "/healthz"
		}, "want /readyz"},
		{"capability without root", func(_ *corev1.ConfigMap, c *corev1.Container) {
			c.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
		}, "gives non-root processes none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s objects
			for _, o := range all {
				switch v := o.(type) {
				case *corev1.ConfigMap:
					o = v.DeepCopy()
				case *appsv1.DaemonSet:
					o = v.DeepCopy()
				case *appsv1.Deployment:
					o = v.DeepCopy()
				}
				s = append(s, o)
			}
			cw := s.ferryWorkloads()[0]
			if cw.name != w.name || cw.kind != w.kind {
				t.Fatal("the copy lost the workload")
			}
			tt.edit(ofNamed[*corev1.ConfigMap](s, "ferry-config"), ferryContainer(cw.template))
			_, err := checkFerryPod(t, s, cw, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// kustomize builds a kustomization directory with kustomize's own Go
// package, as kubectl apply -k does.
func kustomize(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return rm.AsYaml()
}

func TestKustomization(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kusttypes.Kustomization
	if err := unmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Namespace != namespace {
		t.Errorf("namespace %q, want %q", k.Namespace, namespace)
	}
	files := slices.Sorted(maps.Keys(readManifests(t)))
	listed := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(files, listed) {
		t.Errorf("kustomization.yaml lists %v; the manifest files are %v", listed, files)
	}

	// The build keeps exactly one ferry workload: the DaemonSet by
	// default, the Deployment when the patch deletes the DaemonSet.
	tmp := t.TempDir()
	for _, f := range append(files, "kustomization.yaml") {
		data, err := os.ReadFile(filepath.Join(kubeDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "kustomization.yaml" {
			// As its comment says: delete the DaemonSet instead of the
			// Deployment, and keep the PodDisruptionBudget.
			swapped := strings.Replace(string(data), "apiVersion: apps/v1\n      kind: Deployment", "apiVersion: apps/v1\n      kind: DaemonSet", 1)
			pdbPatch := regexp.MustCompile(`(?m)^  - patch: \|-\n      \$patch: delete\n      apiVersion: policy/v1\n      kind: PodDisruptionBudget\n(      .*\n)*`)
			swapped = pdbPatch.ReplaceAllString(swapped, "")
			if strings.Count(swapped, "$patch: delete") != 1 || !strings.Contains(swapped, "kind: DaemonSet") {
				t.Fatalf("kustomization.yaml's patches are not as its comment says:\n%s", swapped)
			}
			data = []byte(swapped)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ dir, want string }{{kubeDir, "DaemonSet"}, {tmp, "Deployment"}} {
		t.Run(tt.want, func(t *testing.T) {
			out, err := kustomize(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			s, err := decodeAll(out)
			if err != nil {
				t.Fatalf("kustomize output: %v", err)
			}
			ws := s.ferryWorkloads()
			if len(ws) != 1 || ws[0].kind != tt.want {
				t.Fatalf("build has %d ferry workloads, want one %s", len(ws), tt.want)
			}
			p, err := checkFerryPod(t, s, ws[0], nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkRedis(s, p, nil); err != nil {
				t.Error(err)
			}
			if err := checkSelectors(s); err != nil {
				t.Error(err)
			}
			if n := len(ofType[*policyv1.PodDisruptionBudget](s)); (n == 1) != (tt.want == "Deployment") {
				t.Errorf("%d PodDisruptionBudgets with the %s", n, tt.want)
			}
			if img := ferryContainer(ws[0].template).Image; img != "ferry:latest" {
				t.Errorf("image %q after the images transformer", img)
			}
		})
	}
}

// chartOutput is one rendering of the chart.
type chartOutput struct {
	objs  objects
	notes string
}

// renderChart renders the chart with values (YAML) over its defaults, with
// Helm's own engine in strict mode (a missing value is an error), and
// decodes every object strictly.
func renderChart(release, values string) (chartOutput, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return chartOutput{}, fmt.Errorf("load chart: %w", err)
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		return chartOutput{}, fmt.Errorf("values: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion("v1.33.0")
	if err != nil {
		return chartOutput{}, err
	}
	caps.KubeVersion = *kv
	rv, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return chartOutput{}, fmt.Errorf("values: %w", err)
	}
	files, err := engine.Engine{Strict: true}.Render(chrt, rv)
	if err != nil {
		return chartOutput{}, fmt.Errorf("render: %w", err)
	}
	var out chartOutput
	for _, name := range slices.Sorted(maps.Keys(files)) {
		text := files[name]
		if strings.Contains(text, "<no value>") {
			return chartOutput{}, fmt.Errorf("%s renders <no value>", name)
		}
		switch {
		case strings.HasSuffix(name, "NOTES.txt"):
			out.notes = text
			continue
		case !strings.HasSuffix(name, ".yaml"):
			continue
		}
		objs, err := decodeAll([]byte(text))
		if err != nil {
			return chartOutput{}, fmt.Errorf("%s: %w", name, err)
		}
		out.objs = append(out.objs, objs...)
	}
	return out, nil
}

func TestHelmChart(t *testing.T) {
	external := map[string]map[string]string{
		"my-ferry": {
			"auth-secrets":     "external-secret-1,external-secret-0",
			"http-api-keys":    "external-api-key-0123456789",
			"http-admin-token": "external-admin-token-0123",
		},
		"managed-redis": {"uri": "rediss://default:pw@redis.example.net:6380/0"},
	}
	tests := []struct {
		name, release, values string
		check                 func(t *testing.T, out chartOutput, p ferryPod)
	}{
		{name: "defaults", check: func(t *testing.T, out chartOutput, p ferryPod) {
			if p.w.kind != "DaemonSet" {
				t.Errorf("kind %s, want DaemonSet", p.w.kind)
			}
			if len(p.cfg.Auth.Secrets) != 1 || len(p.cfg.Auth.Secrets[0]) != 32 {
				t.Errorf("auth.secrets %d, want one generated secret of 32 characters", len(p.cfg.Auth.Secrets))
			}
			if p.cfg.Cluster.Enabled() || p.cfg.Cluster.NonceSecret != "" {
				t.Error("a cluster without Redis values")
			}
			if uid := *p.w.template.Spec.SecurityContext.RunAsUser; uid != 65532 {
				t.Errorf("runAsUser %d, want the image's 65532", uid)
			}
			if p.cfg.Relay.Offload != config.OffloadOff || p.cfg.Realm != "example.com" {
				t.Errorf("relay.offload %q realm %q", p.cfg.Relay.Offload, p.cfg.Realm)
			}
			if !p.cfg.DefaultListen() {
				t.Errorf("listen %v: the defaults let a node without IPv6 serve IPv4", p.cfg.Listen)
			}
			if g := *p.w.template.Spec.TerminationGracePeriodSeconds; g != 45 {
				t.Errorf("terminationGracePeriodSeconds %d, want 5+30+10", g)
			}
			if len(ofType[*policyv1.PodDisruptionBudget](out.objs)) != 0 || len(ofType[*corev1.Service](out.objs)) != 1 {
				t.Error("want one Service and no PodDisruptionBudget (a DaemonSet's has no maxUnavailable)")
			}
			if !strings.Contains(out.notes, "get secret ferry") {
				t.Errorf("NOTES.txt does not say where the generated secret is:\n%s", out.notes)
			}
		}},
		{name: "deployment", release: "edge", values: "kind: Deployment\nreplicaCount: 3\n", check: func(t *testing.T, out chartOutput, p ferryPod) {
			d := ofNamed[*appsv1.Deployment](out.objs, "edge-ferry")
			if d == nil || *d.Spec.Replicas != 3 {
				t.Fatalf("no Deployment edge-ferry with 3 replicas")
			}
			if len(ofType[*appsv1.DaemonSet](out.objs)) != 0 {
				t.Error("a DaemonSet too")
			}
			if pdbs := ofType[*policyv1.PodDisruptionBudget](out.objs); len(pdbs) != 1 || pdbs[0].Spec.MaxUnavailable.IntValue() != 1 {
				t.Error("want one PodDisruptionBudget with maxUnavailable 1")
			}
		}},
		{name: "redis", values: "redis:\n  enabled: true\ncluster:\n  region: eu-west\n  placementCount: 3\n", check: func(t *testing.T, out chartOutput, p ferryPod) {
			if err := checkRedis(out.objs, p, nil); err != nil {
				t.Error(err)
			}
			if p.cfg.Cluster.Region != "eu-west" || p.cfg.Cluster.PlacementCount != 3 || p.cfg.Cluster.PublicHost != testHostIP {
				t.Errorf("cluster %+v", p.cfg.Redacted().Cluster)
			}
			if len(p.cfg.Cluster.NonceSecret) < 16 {
				t.Error("no generated cluster.nonce-secret")
			}
		}},
		{name: "existing secret", values: "existingSecret: my-ferry\n", check: func(t *testing.T, out chartOutput, p ferryPod) {
			if n := len(ofType[*corev1.Secret](out.objs)); n != 0 {
				t.Errorf("%d Secrets rendered, want none", n)
			}
			if !slices.Equal(p.cfg.Auth.Secrets, []string{"external-secret-1", "external-secret-0"}) || p.cfg.HTTP.AdminToken == "" || len(p.cfg.HTTP.APIKeys) != 1 {
				t.Errorf("secrets not from my-ferry: %+v", p.cfg.Redacted())
			}
		}},
		{name: "managed redis", values: "cluster:\n  redisExistingSecret:\n    name: managed-redis\n    key: uri\n  publicHostFromHostIP: false\n", check: func(t *testing.T, out chartOutput, p ferryPod) {
			if p.cfg.Cluster.Redis != external["managed-redis"]["uri"] {
				t.Errorf("cluster.redis %q", p.cfg.Redacted().Cluster.Redis)
			}
			if p.cfg.Cluster.PublicHost != "" {
				t.Errorf("cluster.public-host %q, want ferry's own default", p.cfg.Cluster.PublicHost)
			}
		}},
		{name: "secrets and config from values", values: `
auth:
  secrets: [new-secret-0123456789, old-secret-0123456789]
apiKeys: [backend-key-0123456789, other-key-0123456789]
adminToken: admin-token-0123456789
cluster:
  redis: rediss://user:redis-pass-0123@redis.example.net:6380/0
  nonceSecret: nonce-secret-0123456789
http:
  port: 9090
  corsOrigins: [https://app.example.com]
relay:
  ports: 50000-50999
  externalIP: [203.0.113.7]
config:
  quota:
    user-allocations: 8
  relay:
    allocation-lifetime: 5m
`, check: func(t *testing.T, out chartOutput, p ferryPod) {
			c := p.cfg
			if !slices.Equal(c.Auth.Secrets, []string{"new-secret-0123456789", "old-secret-0123456789"}) ||
				!slices.Equal(c.HTTP.APIKeys, []string{"backend-key-0123456789", "other-key-0123456789"}) ||
				c.HTTP.AdminToken != "admin-token-0123456789" || c.Cluster.NonceSecret != "nonce-secret-0123456789" ||
				c.Cluster.Redis != "rediss://user:redis-pass-0123@redis.example.net:6380/0" {
				t.Errorf("secrets did not reach ferry: %+v", c.Redacted())
			}
			if c.HTTP.Listen != ":9090" || len(c.HTTP.CORSOrigins) != 1 || c.Relay.Ports != "50000-50999" || len(c.Relay.ExternalIP) != 1 {
				t.Errorf("values did not reach ferry: %+v", c.Redacted())
			}
			if c.Quota.UserAllocations != 8 || c.Relay.AllocationLifetime.Minutes() != 5 || c.Relay.Offload != config.OffloadOff {
				t.Errorf("config did not merge over the chart's keys: quota %+v relay %+v", c.Quota, c.Relay)
			}
			if svc := ofType[*corev1.Service](out.objs)[0]; svc.Spec.Ports[0].TargetPort.StrVal != "http" {
				t.Errorf("Service targets %v", svc.Spec.Ports[0].TargetPort)
			}
		}},
		{name: "fast path", values: "fastPath:\n  enabled: true\n  mode: tc\n  interfaces: [eth0]\n  extraCapabilities: [PERFMON]\n", check: func(t *testing.T, out chartOutput, p ferryPod) {
			sc := ferryContainer(p.w.template).SecurityContext
			if p.cfg.Relay.Offload != config.OffloadTC || !slices.Equal(p.cfg.Relay.OffloadInterfaces, []string{"eth0"}) {
				t.Errorf("relay %+v", p.cfg.Relay)
			}
			if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}) {
				t.Errorf("capabilities %v, want BPF NET_ADMIN PERFMON", sc.Capabilities.Add)
			}
		}},
		{name: "fast path privileged", values: "fastPath:\n  enabled: true\n  privileged: true\n", check: func(t *testing.T, out chartOutput, p ferryPod) {
			sc := ferryContainer(p.w.template).SecurityContext
			if sc.Privileged == nil || !*sc.Privileged || sc.AllowPrivilegeEscalation != nil {
				t.Errorf("securityContext %+v, want privileged", sc)
			}
			if p.cfg.Relay.Offload != config.OffloadAuto {
				t.Errorf("relay.offload %q", p.cfg.Relay.Offload)
			}
		}},
		{name: "turns on 443", values: `
listeners:
  - udp://0.0.0.0:3478
  - tcp://0.0.0.0:3478
  - tls://0.0.0.0:443
  - tls://[::]:443
  - dtls://0.0.0.0:5349
tls:
  existingSecret: ferry-tls
`, check: func(t *testing.T, out chartOutput, p ferryPod) {
			sc := ferryContainer(p.w.template).SecurityContext
			if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_BIND_SERVICE"}) {
				t.Errorf("capabilities %v, want NET_BIND_SERVICE alone", sc.Capabilities.Add)
			}
			if p.cfg.TLS.Cert == "" {
				t.Error("no tls.cert")
			}
		}},
		{name: "affinity with Deployment", values: `
kind: Deployment
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: node-role.example.com/edge, operator: Exists}
`, check: func(t *testing.T, out chartOutput, p ferryPod) {
			if a := p.w.template.Spec.Affinity; a == nil || a.NodeAffinity == nil || a.PodAntiAffinity == nil {
				t.Errorf("affinity %+v, want the given nodeAffinity and the chart's podAntiAffinity", a)
			}
		}},
		{name: "affinity with DaemonSet", values: `
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 1
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app: other}}
`, check: func(t *testing.T, out chartOutput, p ferryPod) {
			if a := p.w.template.Spec.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
				t.Errorf("affinity %+v, want the given podAntiAffinity", a)
			}
		}},
		{name: "long drain", values: "drainTimeoutSeconds: 120\npreStopSleepSeconds: 3\n", check: func(t *testing.T, out chartOutput, p ferryPod) {
			if g := *p.w.template.Spec.TerminationGracePeriodSeconds; g != 133 || p.cfg.DrainTimeout.Seconds() != 120 {
				t.Errorf("terminationGracePeriodSeconds %d drain-timeout %s", g, p.cfg.DrainTimeout)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := cmp.Or(tt.release, "ferry")
			out, err := renderChart(release, tt.values)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range out.objs {
				if ns := o.(metav1.Object).GetNamespace(); ns != namespace {
					t.Errorf("%s in namespace %q", o.(metav1.Object).GetName(), ns)
				}
			}
			ws := out.objs.ferryWorkloads()
			if len(ws) != 1 {
				t.Fatalf("%d ferry workloads, want 1", len(ws))
			}
			p, err := checkFerryPod(t, out.objs, ws[0], external)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkSelectors(out.objs); err != nil {
				t.Error(err)
			}
			tt.check(t, out, p)
		})
	}
}

func TestHelmChartRejects(t *testing.T) {
	tests := []struct {
		name, values, want string
	}{
		{"unknown kind", "kind: StatefulSet\n", "kind"},
		{"misspelt value", "hostNetwrk: false\n", "hostNetwrk"},
		{"misspelt nested value", "fastPath:\n  enable: true\n", "enable"},
		{"listener without port", "listeners: [udp://0.0.0.0]\n", "explicit port"},
		{"tls without certificate", "listeners: [tls://0.0.0.0:5349]\n", "tls.existingSecret"},
		{"secret in config", "config:\n  auth:\n    secrets: [oops-0123456789abcdef]\n", "do not belong in the ConfigMap"},
		{"drain in config", "config:\n  drain-timeout: 90s\n", "drainTimeoutSeconds"},
		{"grace period too short", "terminationGracePeriodSeconds: 30\n", "must exceed"},
		{"bad redis password", "redis:\n  enabled: true\n  password: 'p@ss word'\n", "redis.password"},
		{"listeners in config", "config:\n  listen: [udp://0.0.0.0:3479]\n", "config.listen: set it through listeners"},
		{"fast path in config", "config:\n  relay:\n    offload: auto\n", "config.relay.offload: set it through fastPath"},
		{"two Redis", "redis:\n  enabled: true\ncluster:\n  redis: redis://r:6379/0\n", "set one of"},
		{"existing secret and secret values", "existingSecret: mine\napiKeys: [key-0123456789abcdef]\n", "put them in that Secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderChart("ferry", tt.values)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}

	// Keys the chart passes through unchecked reach ferry's loader.
	for _, tt := range []struct{ name, values, want string }{
		{"misspelt ferry key", "config:\n  quota:\n    user-alocations: 8\n", "quota.user-alocations: unknown key"},
		{"bad ferry value", "config:\n  relay:\n    allocation-lifetime: 3h\n", "relay.allocation-lifetime"},
		{"bad realm", "realm: ' '\n", "realm"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := renderChart("ferry", tt.values)
			if err != nil {
				t.Fatal(err)
			}
			_, err = checkFerryPod(t, out.objs, out.objs.ferryWorkloads()[0], nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestHelmLint(t *testing.T) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1.30.0", "v1.33.0"} {
		if !chartutil.IsCompatibleRange(chrt.Metadata.KubeVersion, v) {
			t.Errorf("kubeVersion %q excludes %s", chrt.Metadata.KubeVersion, v)
		}
	}
	if chartutil.IsCompatibleRange(chrt.Metadata.KubeVersion, "v1.29.5") {
		t.Errorf("kubeVersion %q admits 1.29, which has no preStop sleep by default", chrt.Metadata.KubeVersion)
	}
	kv, err := chartutil.ParseKubeVersion("v1.33.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, values := range []map[string]any{nil, {"kind": "Deployment", "redis": map[string]any{"enabled": true}}} {
		l := lint.AllWithKubeVersion(chartDir, values, namespace, kv)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint (values %v): %v", values, m)
			}
		}
	}
}
