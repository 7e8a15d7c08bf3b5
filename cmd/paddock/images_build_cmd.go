package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/paddock-build/paddock/imagebuild"
)

const imagesBuildUsage = `usage: paddock images build --binary OS/ARCH=FILE... --out DIR [--tag TAG] [--push REGISTRY]

Builds one OCI image per role (storage, scheduler, worker, runner,
installer) from static paddock binaries (CGO_ENABLED=0), one per platform,
into a multi-platform index each; writes them as an OCI image layout at DIR,
and with --push sends them to REGISTRY/paddock-ROLE:TAG. No Docker daemon is
used. SOURCE_DATE_EPOCH sets the files' and configs' time (default 0): the
same binaries and CA bundle give the same digests. 'make images' runs this.
`

// imagesBuildFlags are the flags of `paddock images build`.
type imagesBuildFlags struct {
	binaries       stringsList
	out, tag, push string
	caCerts        string
	insecure       bool
}

// stringsList collects a repeated flag's values as given.
type stringsList []string

func (s *stringsList) String() string     { return strings.Join(*s, ",") }
func (s *stringsList) Set(v string) error { *s = append(*s, v); return nil }

func runImagesBuild(ctx context.Context, args []string) error {
	var f imagesBuildFlags
	fs := flag.NewFlagSet("images build", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), imagesBuildUsage); fs.PrintDefaults() }
	fs.Var(&f.binaries, "binary", "OS/ARCH=FILE: a static paddock binary for that platform (repeatable)")
	fs.StringVar(&f.out, "out", "", "OCI image layout directory to write (an old layout is replaced whole, a directory of other files refused; required)")
	fs.StringVar(&f.tag, "tag", version, "tag of every image, and its version label")
	fs.StringVar(&f.push, "push", "", "registry HOST[:PORT][/PATH] to push the images to")
	fs.BoolVar(&f.insecure, "insecure", false, "push over plain HTTP (loopback and private registries always are)")
	fs.StringVar(&f.caCerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle put in the images")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(f.binaries) == 0 || f.out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("--binary and --out are required, and no arguments")
	}
	opts, err := f.options()
	if err != nil {
		return err
	}
	imgs, err := imagebuild.Build(opts)
	if err != nil {
		return err
	}
	if err := imagebuild.WriteLayout(f.out, f.tag, imgs); err != nil {
		return err
	}
	digests, err := imagebuild.Digests(imgs)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		fmt.Printf("%s %s\n", imagebuild.RefName(img.Role.Name, f.tag), digests[img.Role.Name])
	}
	if f.push == "" {
		return nil
	}
	pushed, err := imagebuild.Push(ctx, f.push, f.tag, f.insecure, imgs)
	if err != nil {
		return err
	}
	for _, p := range pushed {
		fmt.Printf("pushed %s\n", p)
	}
	return nil
}

// options reads the binaries and the CA bundle the flags name.
func (f imagesBuildFlags) options() (imagebuild.Options, error) {
	o := imagebuild.Options{Version: f.tag}
	for _, b := range f.binaries {
		plat, file, ok := strings.Cut(b, "=")
		if !ok {
			return o, fmt.Errorf("--binary %q: want OS/ARCH=FILE", b)
		}
		p, err := imagebuild.ParsePlatform(plat)
		if err != nil {
			return o, fmt.Errorf("--binary: %w", err)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return o, fmt.Errorf("--binary %s: %w", plat, err)
		}
		o.Binaries = append(o.Binaries, imagebuild.Binary{Platform: p, Data: data})
	}
	certs, err := os.ReadFile(f.caCerts)
	if err != nil {
		return o, fmt.Errorf("--ca-certs: %w", err)
	}
	o.CACerts = certs
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return o, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		o.Created = time.Unix(sec, 0)
	}
	return o, nil
}
