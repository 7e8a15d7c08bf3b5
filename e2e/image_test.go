package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/paddock-build/paddock/images/imagetest"
)

// TestContainerImage: an action whose container-image names an image in a
// registry (in this process, on loopback) runs in that image's rootfs, not
// the host's: it sees the image's files and none of the host's.
func TestContainerImage(t *testing.T) {
	needPaddock(t)
	host := imagetest.Serve(t)
	// A one-layer image: busybox, the shell, cat and ls as its applets, and
	// a marker file.
	imageRef := imagetest.Push(t, host, "e2e/busybox:1", imagetest.MarkerImage(t, "linux/"+runtime.GOARCH,
		v1.Config{Env: []string{"PATH=/bin"}}, "from the image\n", "sh", "cat", "ls"))

	// The runner may pull from this registry over plain HTTP.
	cfgPath := filepath.Join(searchableTempDir(t), "runner.yaml")
	if err := os.WriteFile(cfgPath, []byte("version: 1\nimages:\n  insecure: [\""+host+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, c := startUpClient(t, "--runner-config", cfgPath)
	cmd := &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", "cat /etc/marker; ls /; test -e /usr/bin/gcc && echo host gcc visible; true"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin"}},
	}
	image := []*repb.Platform_Property{{Name: "container-image", Value: imageRef}}
	_, stdout, stderr := c.run(t.Context(), action{cmd: cmd, platform: image, doNotCache: true})
	t.Logf("in the image: stdout %q, stderr %q", stdout, stderr)
	if !strings.HasPrefix(stdout, "from the image\n") {
		t.Errorf("the action did not see the image's /etc/marker: stdout %q, stderr %q", stdout, stderr)
	}
	if strings.Contains(stdout, "host gcc visible") || strings.Contains(stdout, "usr") {
		t.Errorf("the action in the image sees the host's root: stdout %q", stdout)
	}
	f.shutdown()
}
