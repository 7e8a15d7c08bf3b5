package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-build/paddock/imagebuild"
)

// invocation is one paddock command line a deployment file runs.
type invocation struct {
	source string
	args   []string // the subcommand, then its flags
}

// TestDeployFilesUseRealFlags: every paddock command line in the
// Kubernetes manifests, the systemd units and the images' configs names a subcommand and flags
// this binary accepts, so the deployment files cannot drift from the code.
func TestDeployFilesUseRealFlags(t *testing.T) {
	invs := append(kubernetesInvocations(t), systemdInvocations(t)...)
	for _, r := range imagebuild.Roles() {
		if r.Name != "installer" { // its Cmd is a directory
			invs = append(invs, invocation{"the paddock-" + r.Name + " image", append(append([]string(nil), r.Entrypoint...), r.Cmd...)})
		}
	}
	if len(invs) < 11 {
		t.Fatalf("found only %d paddock command lines in deploy/: %v", len(invs), invs)
	}
	for _, inv := range invs {
		// -h after valid flags prints the help and exits 0; an unknown
		// flag or a stray argument exits 1.
		out, err := exec.Command(binary, append(inv.args, "-h")...).CombinedOutput()
		if err != nil || !strings.Contains(strings.ToLower(string(out)), "usage") {
			t.Errorf("%s: paddock %s is refused:\n%s", inv.source, strings.Join(inv.args, " "), out)
		}
	}
}

// kubernetesInvocations reads the containers of every workload in
// deploy/kubernetes: paddock images (the base names them paddock-ROLE) run
// their role's entrypoint with the container's args; other images run
// paddock when their command is the installed /paddock/paddock. Init
// containers (the installer: a positional directory) are not checked.
func kubernetesInvocations(t *testing.T) []invocation {
	t.Helper()
	entry := map[string][]string{}
	for _, r := range imagebuild.Roles() {
		entry["paddock-"+r.Name] = r.Entrypoint
	}
	var out []invocation
	err := filepath.WalkDir("../../deploy/kubernetes", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".yaml" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc struct {
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Name, Image   string
								Command, Args []string
							}
						}
					}
				}
			}
			var typeErr *yaml.TypeError
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil && !errors.As(err, &typeErr) {
				return err
			} // a TypeError: not a workload (a kustomization, a role config)
			for _, c := range doc.Spec.Template.Spec.Containers {
				src := p + " container " + c.Name
				switch {
				case entry[c.Image] != nil:
					out = append(out, invocation{src, append(append([]string(nil), entry[c.Image]...), c.Args...)})
				case len(c.Command) > 1 && c.Command[0] == "/paddock/paddock":
					out = append(out, invocation{src, append(append([]string(nil), c.Command[1:]...), c.Args...)})
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// systemdInvocations reads the ExecStart lines of deploy/systemd.
func systemdInvocations(t *testing.T) []invocation {
	t.Helper()
	units, err := filepath.Glob("../../deploy/systemd/*.service")
	if err != nil {
		t.Fatal(err)
	}
	var out []invocation
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "\\\n", " ")
		for _, line := range strings.Split(text, "\n") {
			if cmd, ok := strings.CutPrefix(line, "ExecStart="); ok {
				f := strings.Fields(cmd)
				if len(f) < 2 || f[0] != "/usr/local/bin/paddock" {
					t.Errorf("%s: ExecStart does not run /usr/local/bin/paddock: %q", u, cmd)
					continue
				}
				out = append(out, invocation{u, f[1:]})
			}
		}
	}
	return out
}

// TestDeployConfigFilesLoad: every deployment command line that names a
// config file under /etc/paddock runs with that file as the deployment
// ships it (the Kubernetes ConfigMaps' sources in base/config, the
// examples in configs/ for the systemd units, whose docs say to copy
// them) and --print-config: the real flag parsing, loading and
// validation accept the pair.
func TestDeployConfigFilesLoad(t *testing.T) {
	checked := 0
	for _, inv := range append(kubernetesInvocations(t), systemdInvocations(t)...) {
		dir := "../../configs/"
		if strings.Contains(inv.source, "kubernetes") {
			dir = "../../deploy/kubernetes/base/config/"
		}
		var args []string
		named := false
		for _, a := range inv.args {
			flag, value, eq := strings.Cut(a, "=")
			if rest, ok := strings.CutPrefix(value, "/etc/paddock/"); eq && ok {
				a, named = flag+"="+dir+rest, true
			} else if rest, ok := strings.CutPrefix(a, "/etc/paddock/"); ok {
				a, named = dir+rest, true
			}
			args = append(args, a)
		}
		if !named {
			continue
		}
		checked++
		out, err := exec.Command(binary, append(args, "--print-config")...).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "version: 1\n") {
			t.Errorf("%s: paddock %s --print-config: %v\n%s", inv.source, strings.Join(args, " "), err, out)
		}
	}
	if checked < 6 {
		t.Fatalf("only %d deployment command lines name a config file", checked)
	}
}

// TestImageDefaultArgs: the storage and scheduler images' default
// arguments, run as they are, print the role's usage, which names what
// a reachable listener needs, rather than serve or exit with an error
// (they were `--listen :8980 --dir …`, refused without TLS and a policy
// or --insecure, and `--listen :8981`, without the required --storage);
// and docs/deployment.md's table of images shows every image's default
// arguments as the code has them.
func TestImageDefaultArgs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range imagebuild.Roles() {
		want := "—"
		if len(r.Cmd) > 0 {
			want = "`" + strings.Join(r.Cmd, " ") + "`"
		}
		cell := ""
		for _, line := range strings.Split(string(doc), "\n") {
			if cells := strings.Split(line, "|"); len(cells) == 6 && strings.TrimSpace(cells[1]) == "`paddock-"+r.Name+"`" {
				cell = strings.TrimSpace(cells[4])
			}
		}
		if !strings.HasPrefix(cell, want) {
			t.Errorf("docs/deployment.md: the paddock-%s image's default arguments are %q, want %s", r.Name, cell, want)
		}
		if r.Name != "storage" && r.Name != "scheduler" {
			continue // none, or the installer's directory
		}
		// Bounded: defaults that served would run until killed.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, binary, append(append([]string(nil), r.Entrypoint...), r.Cmd...)...).CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "--insecure on a network you trust") {
			t.Errorf("the paddock-%s image's default arguments %q do not print its usage:\n%s", r.Name, r.Cmd, out)
		}
	}
}
