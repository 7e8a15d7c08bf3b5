package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// object is one decoded manifest, typed.
type object struct {
	kind, name, namespace string
	source                string // file (and document) it came from, for messages
	obj                   any    // *appsv1.Deployment, *corev1.Service, ...
}

func (o object) String() string { return o.kind + "/" + o.name + " (" + o.source + ")" }

// kinds are the API types the manifests may use, by apiVersion and kind.
// Any other is an error: a manifest of a kind nobody checks is a manifest
// nobody checked.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

// decodeStrict decodes every YAML document of data into its API type,
// strictly: an unknown or duplicated field is an error, as a typo would
// otherwise be dropped silently by the API server.
func decodeStrict(data []byte, source string) ([]object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []object
	for i := 0; ; i++ {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		doc, err := yaml.Marshal(&node)
		if err != nil {
			return nil, err
		}
		src := fmt.Sprintf("%s#%d", source, i)
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := sigsyaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		newObj, ok := kinds[meta.APIVersion+"/"+meta.Kind]
		if !ok {
			return nil, fmt.Errorf("%s: unchecked kind %s/%s", src, meta.APIVersion, meta.Kind)
		}
		obj := newObj()
		if err := sigsyaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s (%s %s): %w", src, meta.Kind, meta.Metadata.Name, err)
		}
		if meta.Metadata.Name == "" {
			return nil, fmt.Errorf("%s: %s without a name", src, meta.Kind)
		}
		out = append(out, object{kind: meta.Kind, name: meta.Metadata.Name, namespace: meta.Metadata.Namespace, source: src, obj: obj})
	}
}
