package kubernetes

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// workload is a Deployment or StatefulSet, by its pod template.
type workload struct {
	object
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
	claims   []string // volumeClaimTemplates names (StatefulSet)
}

// world indexes a set of rendered manifests for the cross-reference checks.
type world struct {
	objs       []object
	workloads  []workload
	services   map[string]*corev1.Service
	configMaps map[string]bool
}

func newWorld(objs []object) *world {
	w := &world{objs: objs, services: map[string]*corev1.Service{}, configMaps: map[string]bool{}}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			w.workloads = append(w.workloads, workload{object: o, selector: v.Spec.Selector, pod: v.Spec.Template})
		case *appsv1.StatefulSet:
			wl := workload{object: o, selector: v.Spec.Selector, pod: v.Spec.Template}
			for _, c := range v.Spec.VolumeClaimTemplates {
				wl.claims = append(wl.claims, c.Name)
			}
			w.workloads = append(w.workloads, wl)
		case *corev1.Service:
			w.services[o.name] = v
		case *corev1.ConfigMap:
			w.configMaps[o.name] = true
		}
	}
	return w
}

// check runs every cross-reference check and returns what is wrong, each
// message naming the object at fault.
func (w *world) check() []error {
	var errs []error
	for _, wl := range w.workloads {
		errs = append(errs, w.checkWorkload(wl)...)
	}
	for _, o := range w.objs {
		switch v := o.obj.(type) {
		case *corev1.Service:
			errs = append(errs, w.checkService(o, v)...)
		case *appsv1.StatefulSet:
			if s, ok := w.services[v.Spec.ServiceName]; !ok || s.Spec.ClusterIP != corev1.ClusterIPNone {
				errs = append(errs, fmt.Errorf("%s: serviceName %q is not a headless Service", o, v.Spec.ServiceName))
			}
		case *policyv1.PodDisruptionBudget:
			errs = append(errs, w.selects(o, "selector", v.Spec.Selector)...)
		case *autoscalingv2.HorizontalPodAutoscaler:
			if w.workload(v.Spec.ScaleTargetRef.Kind, v.Spec.ScaleTargetRef.Name) == nil {
				errs = append(errs, fmt.Errorf("%s: scaleTargetRef %s/%s does not exist", o, v.Spec.ScaleTargetRef.Kind, v.Spec.ScaleTargetRef.Name))
			}
		case *networkingv1.NetworkPolicy:
			errs = append(errs, w.checkNetworkPolicy(o, v)...)
		}
	}
	return errs
}

func (w *world) workload(kind, name string) *workload {
	for i := range w.workloads {
		if w.workloads[i].kind == kind && w.workloads[i].name == name {
			return &w.workloads[i]
		}
	}
	return nil
}

// matching returns the workloads whose pods sel selects; an error if sel
// is not a valid selector.
func (w *world) matching(sel *metav1.LabelSelector) ([]workload, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	var out []workload
	for _, wl := range w.workloads {
		if s.Matches(labels.Set(wl.pod.Labels)) {
			out = append(out, wl)
		}
	}
	return out, nil
}

// selects checks that a non-empty selector selects at least one pod.
func (w *world) selects(o object, what string, sel *metav1.LabelSelector) []error {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return []error{fmt.Errorf("%s: %s is empty", o, what)}
	}
	m, err := w.matching(sel)
	if err != nil {
		return []error{fmt.Errorf("%s: %s: %w", o, what, err)}
	}
	if len(m) == 0 {
		return []error{fmt.Errorf("%s: %s %v selects no pod", o, what, sel.MatchLabels)}
	}
	return nil
}

// checkWorkload: the selector selects the template; volumes name existing
// ConfigMaps; mounts name declared volumes; probes name declared ports;
// NAME:PORT arguments name a Service and one of its ports.
func (w *world) checkWorkload(wl workload) []error {
	var errs []error
	if s, err := metav1.LabelSelectorAsSelector(wl.selector); err != nil || !s.Matches(labels.Set(wl.pod.Labels)) {
		errs = append(errs, fmt.Errorf("%s: selector does not select its own pod template", wl))
	}
	volumes := map[string]bool{}
	for _, c := range wl.claims {
		volumes[c] = true
	}
	for _, v := range wl.pod.Spec.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil && !w.configMaps[v.ConfigMap.Name] {
			errs = append(errs, fmt.Errorf("%s: volume %s names ConfigMap %q, which does not exist", wl, v.Name, v.ConfigMap.Name))
		}
	}
	containers := append(append([]corev1.Container(nil), wl.pod.Spec.InitContainers...), wl.pod.Spec.Containers...)
	for _, c := range containers {
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				errs = append(errs, fmt.Errorf("%s: container %s mounts volume %q, which is not declared", wl, c.Name, m.Name))
			}
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if port, ok := probePort(p); ok && !hasPort(c, port) {
				errs = append(errs, fmt.Errorf("%s: container %s probes port %s, which it does not declare", wl, c.Name, port.String()))
			}
		}
		for _, ref := range w.serviceRefs(c) {
			errs = append(errs, w.checkServiceRef(wl, c.Name, ref)...)
		}
	}
	return errs
}

func probePort(p *corev1.Probe) (intstr.IntOrString, bool) {
	switch {
	case p == nil:
		return intstr.IntOrString{}, false
	case p.GRPC != nil:
		return intstr.FromInt32(p.GRPC.Port), true
	case p.HTTPGet != nil:
		return p.HTTPGet.Port, true
	case p.TCPSocket != nil:
		return p.TCPSocket.Port, true
	}
	return intstr.IntOrString{}, false
}

func hasPort(c corev1.Container, port intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

// hostPort matches a NAME:PORT address in an argument (--storage=storage:8980).
var hostPort = regexp.MustCompile(`^(?:--[a-z-]+=)?([a-z][a-z0-9-]*):([0-9]+)$`)

// serviceRefs are the NAME:PORT addresses in c's arguments.
func (w *world) serviceRefs(c corev1.Container) [][2]string {
	var out [][2]string
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		if m := hostPort.FindStringSubmatch(a); m != nil {
			out = append(out, [2]string{m[1], m[2]})
		}
	}
	return out
}

func (w *world) checkServiceRef(wl workload, container string, ref [2]string) []error {
	s, ok := w.services[ref[0]]
	if !ok {
		return []error{fmt.Errorf("%s: container %s names Service %q, which does not exist", wl, container, ref[0])}
	}
	for _, p := range s.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == ref[1] {
			return nil
		}
	}
	return []error{fmt.Errorf("%s: container %s names %s:%s, but Service %s has no port %s", wl, container, ref[0], ref[1], ref[0], ref[1])}
}

// checkService: the selector selects pods, and each port's target is a
// port every selected pod declares.
func (w *world) checkService(o object, s *corev1.Service) []error {
	if len(s.Spec.Selector) == 0 {
		return []error{fmt.Errorf("%s: no selector", o)}
	}
	sel := &metav1.LabelSelector{MatchLabels: s.Spec.Selector}
	if errs := w.selects(o, "selector", sel); errs != nil {
		return errs
	}
	pods, _ := w.matching(sel)
	var errs []error
	for _, p := range s.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, wl := range pods {
			if !podHasPort(wl.pod.Spec, target) {
				errs = append(errs, fmt.Errorf("%s: port %d targets %s, which pods of %s do not declare", o, p.Port, target.String(), wl.object))
			}
		}
	}
	return errs
}

func podHasPort(spec corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		if hasPort(c, port) {
			return true
		}
	}
	return false
}

// checkNetworkPolicy: the policy and its pod peers select pods; an
// ingress port is one the selected pods declare, an egress port to pod
// peers one those peers declare.
func (w *world) checkNetworkPolicy(o object, np *networkingv1.NetworkPolicy) []error {
	var errs []error
	var targets []workload
	if len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) > 0 {
		errs = append(errs, w.selects(o, "podSelector", &np.Spec.PodSelector)...)
		targets, _ = w.matching(&np.Spec.PodSelector)
	}
	for i, r := range np.Spec.Ingress {
		errs = append(errs, w.checkPeers(o, fmt.Sprintf("ingress[%d]", i), r.From, nil)...)
		errs = append(errs, checkPolicyPorts(o, fmt.Sprintf("ingress[%d]", i), r.Ports, targets)...)
	}
	for i, r := range np.Spec.Egress {
		errs = append(errs, w.checkPeers(o, fmt.Sprintf("egress[%d]", i), r.To, func(peers []workload) []error {
			return checkPolicyPorts(o, fmt.Sprintf("egress[%d]", i), r.Ports, peers)
		})...)
	}
	return errs
}

// checkPeers checks the pod selectors of peers that stay in this
// namespace (no namespaceSelector), and hands their pods to then.
func (w *world) checkPeers(o object, where string, peers []networkingv1.NetworkPolicyPeer, then func([]workload) []error) []error {
	var errs []error
	for j, p := range peers {
		if p.PodSelector == nil || p.NamespaceSelector != nil {
			continue
		}
		what := fmt.Sprintf("%s peer %d podSelector", where, j)
		if e := w.selects(o, what, p.PodSelector); e != nil {
			errs = append(errs, e...)
			continue
		}
		if then != nil {
			pods, _ := w.matching(p.PodSelector)
			errs = append(errs, then(pods)...)
		}
	}
	return errs
}

func checkPolicyPorts(o object, where string, ports []networkingv1.NetworkPolicyPort, pods []workload) []error {
	var errs []error
	for _, p := range ports {
		if p.Port == nil {
			continue
		}
		for _, wl := range pods {
			if !podHasPort(wl.pod.Spec, *p.Port) {
				errs = append(errs, fmt.Errorf("%s: %s allows port %s, which pods of %s do not declare", o, where, p.Port.String(), wl.object))
			}
		}
	}
	return errs
}

// imagesQualified checks that every image names a registry and a tag or
// digest: what an overlay must set for the base's placeholders.
func imagesQualified(w *world) []error {
	var errs []error
	for _, wl := range w.workloads {
		for _, c := range append(append([]corev1.Container(nil), wl.pod.Spec.InitContainers...), wl.pod.Spec.Containers...) {
			first, rest, _ := strings.Cut(c.Image, "/")
			if rest == "" || !strings.ContainsAny(first, ".:") || !strings.ContainsAny(rest, ":@") {
				errs = append(errs, fmt.Errorf("%s: container %s image %q does not name a registry and a tag or digest", wl, c.Name, c.Image))
			}
		}
	}
	return errs
}
