package rev2

import (
	"slices"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestExecutionSet(t *testing.T) {
	var e Execution
	for _, kv := range [][2]string{
		{PropContainerImage, "docker://gcr.io/distroless/base:nonroot"}, {PropNetwork, "standard"},
		{PropUser, "1000:1000"}, {PropShmSize, "64m"}, {PropAddCapabilities, "net_raw, CAP_CHOWN"},
		{PropEstimatedCPU, "1.5"}, {PropEstimatedMemory, "256MiB"}, {PropInputRootAbsPath, "/work"},
	} {
		if err := e.Set(kv[0], kv[1]); err != nil {
			t.Fatalf("Set(%s, %s): %v", kv[0], kv[1], err)
		}
	}
	if e.ImageRef == nil || e.ImageRef.Registry != "gcr.io" || !e.HostNetwork || e.User != "1000:1000" ||
		e.ShmSize != 64<<20 || !slices.Equal(e.AddCaps, []string{"CAP_CHOWN", "CAP_NET_RAW"}) ||
		e.CPU != 1.5 || e.Memory != 256<<20 || e.InputRootPath != "/work" {
		t.Errorf("parsed %+v", e)
	}
	if _, err := e.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// TestCheckExecution: a refusal names the field, the property and the
// value; routing and other properties are not this check's business.
func TestCheckExecution(t *testing.T) {
	plat := func(kv ...string) *repb.Platform {
		p := &repb.Platform{}
		for i := 0; i < len(kv); i += 2 {
			p.Properties = append(p.Properties, &repb.Platform_Property{Name: kv[i], Value: kv[i+1]})
		}
		return p
	}
	for _, c := range []struct {
		p    *repb.Platform
		want []string // "" = accepted
	}{
		{plat("OSFamily", "linux", "Pool", "x", "dockerNetwork", "off"), nil},
		{plat("dockerNetwork", "bridge"), []string{"f.properties[0]", "dockerNetwork", `"bridge"`, "off or standard"}},
		{plat("dockerPrivileged", "1"), []string{"dockerPrivileged", `"1"`, "true or false"}},
		{plat("dockerShmSize", "1k"), []string{"dockerShmSize", "at least 4096"}},
		{plat("EstimatedCPU", "NaN"), []string{"EstimatedCPU", `"NaN"`}},
		{plat("EstimatedCPU", "0.000001"), []string{"EstimatedCPU", "from 0.01"}}, // the kernel's least CPU quota
		{plat("EstimatedMemory", "-5"), []string{"EstimatedMemory", "positive size"}},
		{plat("dockerDropCapabilities", "sys_fly"), []string{"dockerDropCapabilities", "CAP_SYS_FLY"}},
		{plat("dockerUser", "a:"), []string{"dockerUser", "empty group"}},
		{plat("container-image", "docker://nohost/x"), []string{"container-image", "registry host"}},
		{plat("InputRootAbsolutePath", "/"), []string{"InputRootAbsolutePath", "cannot replace the root"}},
		{plat("InputRootAbsolutePath", strings.Repeat("/x", 65)), []string{"InputRootAbsolutePath", "64 levels"}},
		{plat("InputRootAbsolutePath", "/"+strings.Repeat("x", 1024)), []string{"InputRootAbsolutePath", "1024 bytes"}},
		{plat("InputRootAbsolutePath", "/re3/"+strings.Repeat("a", 300)), []string{"InputRootAbsolutePath", "300 bytes"}},
		{plat("EstimatedCPU", "1", "EstimatedCPU", "2"), []string{"f.properties[1]", "EstimatedCPU", "more than once"}},
		{plat("dockerRunAsRoot", "true", "dockerUser", "nobody"), []string{"f: platform property dockerUser", "dockerRunAsRoot=true"}},
	} {
		err := CheckExecution(c.p, "f")
		if c.want == nil {
			if err != nil {
				t.Errorf("%v: %v", c.p, err)
			}
			continue
		}
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			t.Errorf("%v: %v, want INVALID_ARGUMENT", c.p, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(st.Message(), w) {
				t.Errorf("%v: %q does not say %q", c.p, st.Message(), w)
			}
		}
	}
}
