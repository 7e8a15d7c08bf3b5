// Package kubernetes holds Paddock's Kubernetes manifests (a kustomize base,
// overlays and components) and, in its tests only, their offline checks:
// every file and every rendered overlay decodes strictly into the
// k8s.io/api types, and the references between objects hold. The checks
// live in _test.go files so that k8s.io/api and kustomize stay out of the
// paddock binary.
package kubernetes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/paddock-build/paddock/configs"
)

// manifestFiles are the YAML files that hold Kubernetes objects: all but
// kustomizations and the role configs they turn into ConfigMaps.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".yaml" || d.Name() == "kustomization.yaml" || isRoleConfig(p) {
			return err
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// isRoleConfig tells the role config files (configMapGenerator inputs)
// apart from manifests.
func isRoleConfig(p string) bool {
	return strings.HasPrefix(p, "base/config/") || p == "overlays/production/storage.yaml"
}

// Every manifest file decodes strictly on its own.
func TestManifestFilesDecodeStrictly(t *testing.T) {
	files := manifestFiles(t)
	if len(files) < 8 {
		t.Fatalf("found only %d manifest files: %v", len(files), files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeStrict(b, f); err != nil {
			t.Error(err)
		}
	}
}

// render builds a kustomization as `kubectl apply -k` would, and decodes
// the result strictly.
func render(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	y, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeStrict(y, "kustomize build "+dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// The base and every overlay render, decode strictly and pass the
// cross-reference checks; the overlays also name every image fully and
// put everything in their namespace.
func TestKustomizationsRenderAndCrossReference(t *testing.T) {
	for _, tc := range []struct {
		dir, namespace string
	}{
		{"base", ""},
		{"overlays/dev", "paddock-dev"},
		{"overlays/production", "paddock"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			objs := render(t, tc.dir)
			w := newWorld(objs)
			errs := w.check()
			if tc.namespace != "" {
				errs = append(errs, imagesQualified(w)...)
				for _, o := range objs {
					if o.kind != "Namespace" && o.namespace != tc.namespace {
						errs = append(errs, errors.New(o.String()+": namespace "+o.namespace+", want "+tc.namespace))
					}
				}
			}
			errs = append(errs, renderedConfigsLoad(objs)...)
			for _, err := range errs {
				t.Error(err)
			}
			for _, want := range []string{"StatefulSet/storage", "Deployment/scheduler", "Deployment/workers",
				"Service/frontend", "Service/scheduler", "Service/storage", "PodDisruptionBudget/workers", "NetworkPolicy/workers"} {
				if !hasObject(objs, want) {
					t.Errorf("rendered without %s", want)
				}
			}
		})
	}
}

func hasObject(objs []object, kindName string) bool {
	for _, o := range objs {
		if o.kind+"/"+o.name == kindName {
			return true
		}
	}
	return false
}

// The autoscaling component renders on top of an overlay, and its HPA
// targets the workers.
func TestAutoscalingComponent(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"overlays/production", "components/autoscaling"} {
		abs, _ := filepath.Abs(sub)
		if err := os.Symlink(abs, filepath.Join(dir, filepath.Base(sub))); err != nil {
			t.Fatal(err)
		}
	}
	base, _ := filepath.Abs("base")
	if err := os.Symlink(base, filepath.Join(dir, "base")); err != nil {
		t.Fatal(err)
	}
	k := "resources: [production]\ncomponents: [autoscaling]\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := render(t, dir)
	if !hasObject(objs, "HorizontalPodAutoscaler/workers") {
		t.Fatal("no HorizontalPodAutoscaler/workers")
	}
	for _, err := range newWorld(objs).check() {
		t.Error(err)
	}
}

// renderedConfigsLoad parses the role config in each rendered
// paddock-ROLE-config ConfigMap strictly into the role's config struct:
// what the role will read, overlays' replacements included.
func renderedConfigsLoad(objs []object) []error {
	var errs []error
	for _, o := range objs {
		cm, ok := o.obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		for key, data := range cm.Data {
			var err error
			switch key {
			case "storage.yaml":
				c := configs.DefaultStorage()
				err = configs.ParseFile([]byte(data), &c)
			case "scheduler.yaml":
				c := configs.DefaultScheduler()
				err = configs.ParseFile([]byte(data), &c)
			case "runner.yaml":
				c := configs.DefaultRunner()
				err = configs.ParseFile([]byte(data), &c)
			default:
				err = fmt.Errorf("key %s is no role's config", key)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", o, key, err))
			}
		}
	}
	return errs
}

// The role configs turned into ConfigMaps load strictly into the roles'
// config structs, as `paddock ROLE --config` would load them.
func TestRoleConfigsLoad(t *testing.T) {
	for _, f := range []string{"base/config/storage.yaml", "overlays/production/storage.yaml"} {
		cfg := configs.DefaultStorage()
		if err := configs.Load(f, &cfg); err != nil {
			t.Error(err)
		}
	}
	sched := configs.DefaultScheduler()
	if err := configs.Load("base/config/scheduler.yaml", &sched); err != nil {
		t.Error(err)
	} else if err := sched.Config().Validate(); err != nil {
		t.Errorf("base/config/scheduler.yaml: %v", err)
	}
	file := configs.DefaultRunner()
	if err := configs.Load("base/config/runner.yaml", &file); err != nil {
		t.Fatal(err)
	}
	run := file.Config()
	if err := run.Validate(); err != nil {
		t.Errorf("base/config/runner.yaml: %v", err)
	}
}
