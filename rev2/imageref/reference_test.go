package imageref

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	ok := []struct {
		in   string
		want Reference
	}{
		{"docker://gcr.io/distroless/base:nonroot", Reference{"gcr.io", "distroless/base", "nonroot", ""}},
		{"docker://gcr.io/distroless/base", Reference{"gcr.io", "distroless/base", "latest", ""}},
		{"docker://gcr.io/foo@" + d, Reference{"gcr.io", "foo", "", d}},
		{"docker://gcr.io/foo:1.2@" + d, Reference{"gcr.io", "foo", "1.2", d}},
		{"docker://127.0.0.1:5000/a/b-c_d.e:v1", Reference{"127.0.0.1:5000", "a/b-c_d.e", "v1", ""}},
		{"docker://localhost/x", Reference{"localhost", "x", "latest", ""}},
		{"docker://[::1]:5000/x", Reference{"[::1]:5000", "x", "latest", ""}},
		{"docker://Registry.Example.com/x:T", Reference{"registry.example.com", "x", "T", ""}},
	}
	for _, c := range ok {
		got, none, err := Parse(c.in)
		if err != nil || none || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v, %v; want %+v", c.in, got, none, err, c.want)
		}
	}
	for _, in := range []string{"", "none"} {
		if _, none, err := Parse(in); !none || err != nil {
			t.Errorf("Parse(%q): none=%v err=%v; want none", in, none, err)
		}
	}
	bad := []string{
		"None", " none", "ubuntu:22.04", "docker://ubuntu:22.04", "docker://library/ubuntu",
		"oci://gcr.io/foo", "docker://gcr.io/", "docker://gcr.io/Foo", "docker://gcr.io/foo:",
		"docker://gcr.io/foo@sha256:abc", "docker://gcr.io/foo@md5:" + d[7:], "docker://gcr.io/../etc",
		"docker://gcr.io/foo:bad/tag", "docker://gc r.io/foo", "docker:///foo",
		"docker://[:::]/x", "docker://127.0.0.1:99999/x", "docker://[1.2.3.4]/x", // no registry a runner could reach
	}
	for _, in := range bad {
		_, none, err := Parse(in)
		if err == nil || none {
			t.Errorf("Parse(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), in) {
			t.Errorf("Parse(%q) error %q does not name the value", in, err)
		}
	}
}

func TestReferenceStringRoundTrip(t *testing.T) {
	for _, in := range []string{"docker://gcr.io/a/b:1", "docker://h:1/x@sha256:" + strings.Repeat("a", 64)} {
		r, _, err := Parse(in)
		if err != nil || r.String() != in {
			t.Errorf("round trip %q -> %q, %v", in, r.String(), err)
		}
	}
}
