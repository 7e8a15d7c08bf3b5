package kubernetes

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// find returns the typed object kind/name of objs.
func find[T any](t *testing.T, objs []object, kind, name string) T {
	t.Helper()
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			return o.obj.(T)
		}
	}
	t.Fatalf("no %s/%s", kind, name)
	var zero T
	return zero
}

func container(pod *corev1.PodTemplateSpec, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// Each cross-reference check catches its mistake in the rendered base, and
// names the object at fault.
func TestCrossReferenceChecksCatchMistakes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, objs []object)
		want   string
	}{
		{"service selector", func(t *testing.T, objs []object) {
			find[*corev1.Service](t, objs, "Service", "frontend").Spec.Selector["app.kubernetes.io/component"] = "shceduler"
		}, "Service/frontend (kustomize build base#"},
		{"service target port", func(t *testing.T, objs []object) {
			find[*corev1.Service](t, objs, "Service", "storage").Spec.Ports[0].TargetPort = intstr.FromString("gprc")
		}, "port 8980 targets gprc"},
		{"configmap name", func(t *testing.T, objs []object) {
			find[*appsv1.Deployment](t, objs, "Deployment", "scheduler").Spec.Template.Spec.Volumes[0].ConfigMap.Name = "paddock-scheduler-config"
		}, `names ConfigMap "paddock-scheduler-config", which does not exist`},
		{"service in an argument", func(t *testing.T, objs []object) {
			c := container(&find[*appsv1.Deployment](t, objs, "Deployment", "workers").Spec.Template, "worker")
			c.Args[1] = "--storage=storag:8980"
		}, `names Service "storag"`},
		{"port in an argument", func(t *testing.T, objs []object) {
			c := container(&find[*appsv1.Deployment](t, objs, "Deployment", "workers").Spec.Template, "worker")
			c.Args[0] = "--scheduler=scheduler:8980"
		}, "Service scheduler has no port 8980"},
		{"probe port", func(t *testing.T, objs []object) {
			c := container(&find[*appsv1.StatefulSet](t, objs, "StatefulSet", "storage").Spec.Template, "storage")
			c.ReadinessProbe.GRPC.Port = 8981
		}, "probes port 8981"},
		{"volume mount", func(t *testing.T, objs []object) {
			c := container(&find[*appsv1.Deployment](t, objs, "Deployment", "workers").Spec.Template, "runner")
			c.VolumeMounts[0].Name = "paddock-binary"
		}, `mounts volume "paddock-binary"`},
		{"statefulset service", func(t *testing.T, objs []object) {
			find[*appsv1.StatefulSet](t, objs, "StatefulSet", "storage").Spec.ServiceName = "storage"
		}, `serviceName "storage" is not a headless Service`},
		{"network policy port", func(t *testing.T, objs []object) {
			p := intstr.FromInt32(8980)
			find[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "workers").Spec.Egress[0].Ports[0].Port = &p
		}, "egress[0] allows port 8980, which pods of Deployment/scheduler"},
		{"network policy peer", func(t *testing.T, objs []object) {
			find[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "storage").Spec.Ingress[0].From[1].PodSelector.MatchLabels["app.kubernetes.io/component"] = "workers"
		}, "ingress[0] peer 1 podSelector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, "base")
			tc.break_(t, objs)
			errs := newWorld(objs).check()
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			if !strings.Contains(strings.Join(msgs, "\n"), tc.want) {
				t.Errorf("errors %q, want one containing %q", msgs, tc.want)
			}
		})
	}
}

// Strict decoding refuses an unknown field (a typo) and an unchecked kind.
func TestDecodeStrictRefuses(t *testing.T) {
	typo := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"
	if _, err := decodeStrict([]byte(typo), "typo.yaml"); err == nil || !strings.Contains(err.Error(), `unknown field "replica"`) {
		t.Errorf("a misspelt field: %v", err)
	}
	other := "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n"
	if _, err := decodeStrict([]byte(other), "job.yaml"); err == nil || !strings.Contains(err.Error(), "unchecked kind batch/v1/Job") {
		t.Errorf("an unchecked kind: %v", err)
	}
	unqualified := newWorld(render(t, "base"))
	if errs := imagesQualified(unqualified); len(errs) == 0 {
		t.Error("the base's placeholder images passed as qualified")
	}
}
