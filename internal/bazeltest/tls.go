package bazeltest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Debian's Bazel 4.2.3 cannot speak TLS with the JDK's provider: its
// netty has no JDK ALPN support, so a grpcs:// endpoint crashes the client
// ("JDK provider does not support ALPN protocol", exit 37). It works with
// netty's OpenSSL provider, whose native library comes with Debian's
// libnetty-tcnative-jni. netty looks for it as libnetty_tcnative.so and the
// library derives its Java package from its own file name, so a symlink
// will not do: a copy under that name is put on the server's library path,
// after Bazel's own install base.
const (
	tcnativeLib = "/usr/lib/x86_64-linux-gnu/jni/libnetty-tcnative.so"
	installBase = "/usr/share/bazel" // Debian's, set in /etc/bazel/bazelrc
)

// UseTLS lets this Bazel connect to grpcs:// endpoints. It fails the test
// when libnetty-tcnative-jni is not installed (.ci/run installs it): a
// test of TLS must not pass by skipping it.
func (b *Bazel) UseTLS() {
	b.t.Helper()
	if _, err := os.Stat(tcnativeLib); errors.Is(err, fs.ErrNotExist) {
		b.t.Fatalf("%s is missing: install Debian's libnetty-tcnative-jni, which Bazel 4.2.3 needs for TLS", tcnativeLib)
	}
	lib, err := os.ReadFile(tcnativeLib)
	if err != nil {
		b.t.Fatal(err)
	}
	dir := filepath.Join(b.t.TempDir(), "jni")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "libnetty_tcnative.so"), lib, 0o755); err != nil {
		b.t.Fatal(err)
	}
	b.startup = append(b.startup, "--host_jvm_args=-Djava.library.path="+installBase+":"+dir)
}
