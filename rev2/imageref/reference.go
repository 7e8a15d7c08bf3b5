// Package imageref is the one rule of what a container-image platform
// value may be (docker://REGISTRY/REPO[:TAG][@sha256:DIGEST], or none): the
// scheduler refuses a malformed one at Execute, and the runner's image
// cache pulls what it names. A leaf: standard library only.
package imageref

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Reference names an image the way a build action's platform does:
// docker://REGISTRY/REPO[:TAG][@sha256:DIGEST]. The registry is always
// explicit (there is no implied Docker Hub), so a reference means the same
// thing on every worker.
type Reference struct {
	Registry   string // host[:port], e.g. "gcr.io" or "127.0.0.1:5000"
	Repository string // path below the registry, e.g. "distroless/base"
	Tag        string // "latest" when neither a tag nor a digest is given; "" with a digest alone
	Digest     string // "sha256:<64 hex>" or ""
}

const dockerScheme = "docker://"

var (
	// From the OCI distribution spec.
	repoComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	hostPattern   = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$`)
)

// Parse parses a container-image platform value. An empty value
// or "none" means the action names no image (none is true, and the runner
// uses the host's root). Any other value that is not a well-formed docker://
// reference is an error that quotes the value.
func Parse(value string) (ref Reference, none bool, err error) {
	if value == "" || value == "none" {
		return Reference{}, true, nil
	}
	bad := func(why string) (Reference, bool, error) {
		return Reference{}, false, fmt.Errorf("container image %q: %s (want docker://REGISTRY/REPO[:TAG][@sha256:DIGEST] or none)", value, why)
	}
	rest, ok := strings.CutPrefix(value, dockerScheme)
	if !ok {
		return bad("not a docker:// reference")
	}
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		ref.Digest = rest[i+1:]
		rest = rest[:i]
		if !digestPattern.MatchString(ref.Digest) {
			return bad("digest is not sha256:<64 lowercase hex digits>")
		}
	}
	host, repo, ok := strings.Cut(rest, "/")
	if !ok || host == "" {
		return bad("no registry host")
	}
	if !IsHost(host) || !(strings.ContainsAny(host, ".:[") || host == "localhost") {
		return bad(fmt.Sprintf("%q is not a registry host", host))
	}
	if i := strings.LastIndexByte(repo, ':'); i >= 0 {
		ref.Tag = repo[i+1:]
		repo = repo[:i]
		if !tagPattern.MatchString(ref.Tag) {
			return bad(fmt.Sprintf("invalid tag %q", ref.Tag))
		}
	}
	if repo == "" {
		return bad("no repository")
	}
	for _, c := range strings.Split(repo, "/") {
		if !repoComponent.MatchString(c) {
			return bad(fmt.Sprintf("invalid repository %q", repo))
		}
	}
	if len(repo)+len(host) > 255 {
		return bad("name longer than 255 characters")
	}
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = "latest"
	}
	ref.Registry = strings.ToLower(host)
	ref.Repository = repo
	return ref, false, nil
}

// String returns the reference in platform-value form.
func (r Reference) String() string {
	return dockerScheme + r.Name()
}

// Name is the reference without the scheme, as go-containerregistry and
// Docker write it.
func (r Reference) Name() string {
	s := r.Registry + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Pinned reports whether the reference names content by digest, so its
// resolution never changes and never needs a registry.
func (r Reference) Pinned() bool { return r.Digest != "" }

// IsDigest reports whether s is a digest as references carry them:
// "sha256:" and 64 lowercase hex digits.
func IsDigest(s string) bool { return digestPattern.MatchString(s) }

// IsHost reports whether s is a registry host as references name them:
// a DNS name or a bracketed IPv6 address, with an optional port up to
// 65535.
func IsHost(s string) bool {
	if !hostPattern.MatchString(s) {
		return false
	}
	name, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		name, port = s[:i], s[i+1:]
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n > 65535 {
			return false
		}
	}
	if inner, ok := strings.CutPrefix(name, "["); ok {
		ip := net.ParseIP(strings.TrimSuffix(inner, "]"))
		return ip != nil && ip.To4() == nil
	}
	return true
}
