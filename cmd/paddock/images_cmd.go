package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/images"
)

const imagesUsage = `usage: paddock images load --cache DIR [--platform OS/ARCH] [--max-bytes SIZE] FILE...
       paddock images pull --cache DIR [--platform OS/ARCH] [--max-bytes SIZE] [--insecure HOST]... IMAGE...
       paddock images build --binary OS/ARCH=FILE... --out DIR [--tag TAG] [--push REGISTRY]

load and pull take their flags before or after the FILEs or IMAGEs.

load: FILE is an OCI image layout directory or a 'docker save' tarball. Its
images are unpacked into the runner's image cache, so actions can name them
by digest, or by tag where the archive names them REGISTRY/REPO:TAG, without
registry access (other names, such as a layout's bare tag, are listed as
ignored).
pull: IMAGE is docker://REGISTRY/REPO[:TAG][@sha256:DIGEST], as an action's
container-image names it; it is pulled and unpacked into the cache as the
runner does, and its digest and unpacked root printed.
Stop the runner first: one process owns the cache at a time.
build: the images of Paddock's roles ('paddock images build -h').
`

func runImages(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, imagesUsage)
		return errors.New("want a subcommand: load, pull or build")
	}
	switch args[0] {
	case "load":
		return runImagesLoad(ctx, args[1:])
	case "pull":
		return runImagesPull(ctx, args[1:])
	case "build":
		return runImagesBuild(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, imagesUsage)
		return nil
	}
	fmt.Fprint(os.Stderr, imagesUsage)
	return fmt.Errorf("unknown subcommand %q: want load, pull or build", args[0])
}

func runImagesLoad(ctx context.Context, args []string) error {
	fs, c := newImageCacheFlagSet("images load")
	files, err := c.parse(fs, args, "FILE")
	if err != nil {
		return err
	}
	cache, err := c.open(nil)
	if err != nil {
		return err
	}
	defer cache.Close()
	for _, file := range files {
		loaded, err := cache.Load(ctx, file)
		if err != nil {
			return err
		}
		for _, li := range loaded {
			fmt.Println(li.Digest)
			for _, n := range li.Names {
				fmt.Printf("  %s\n", n)
			}
			if len(li.Names) == 0 {
				for _, n := range li.Ignored {
					fmt.Printf("  (named %q in the archive, which is not REGISTRY/REPO:TAG: known by its digest only)\n", n)
				}
			}
		}
	}
	return nil
}

// runImagesPull pulls images into a cache through the runner's own path
// (images.Cache.Rootfs): the check that an image an action or a deployment
// names can be pulled, verified and unpacked here.
func runImagesPull(ctx context.Context, args []string) error {
	fs, c := newImageCacheFlagSet("images pull")
	var insecure stringsList
	fs.Var(&insecure, "insecure", "registry HOST[:PORT] reachable over plain HTTP (repeatable)")
	refs, err := c.parse(fs, args, "IMAGE")
	if err != nil {
		return err
	}
	cache, err := c.open(insecure)
	if err != nil {
		return err
	}
	defer cache.Close()
	for _, value := range refs {
		ref, none, err := images.ParseReference(value)
		if err == nil && none {
			err = errors.New("names no image")
		}
		if err != nil {
			return fmt.Errorf("%q: %w", value, err)
		}
		rootfs, err := cache.Rootfs(ctx, ref)
		if err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		fmt.Printf("%s %s\n  rootfs %s\n", ref, rootfs.Digest, rootfs.Path)
		rootfs.Release()
	}
	return nil
}

// imageCacheFlags are the flags `images load` and `images pull` share:
// the cache they unpack into and the platform they pick, read and checked
// the same way for both.
type imageCacheFlags struct {
	dir, platform string
	maxBytes      configs.ByteSize
}

// newImageCacheFlagSet is the subcommand name's flag set with
// imageCacheFlags registered.
func newImageCacheFlagSet(name string) (*flag.FlagSet, *imageCacheFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), imagesUsage); fs.PrintDefaults() }
	c := &imageCacheFlags{maxBytes: images.DefaultMaxBytes}
	fs.StringVar(&c.dir, "cache", "", "the runner's image cache directory (required)")
	// The runner's bound: unbounded, a 1 MB layer that unpacks to 1 GiB
	// went into the cache, which the runner then refused to use.
	byteSizeFlag(fs, &c.maxBytes, "max-bytes", "bound of the cache, as the runner's images.max_bytes: an image that does not fit is refused, and others evicted for it")
	fs.StringVar(&c.platform, "platform", "", "platform picked from multi-platform images (default linux/<this machine>)")
	return fs, c
}

// parse parses args, flags before and after the operands alike
// (`images load FILE --cache DIR` as well as `--cache DIR FILE`; after
// "--" everything is an operand), and returns the operands; it requires
// --cache and at least one operand (named in the error). The flag
// package alone stops at the first operand and left the flags after it
// as files to load.
func (c *imageCacheFlags) parse(fs *flag.FlagSet, args []string, operand string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			operands = append(operands, rest...)
			break
		}
		operands, args = append(operands, rest[0]), rest[1:]
	}
	if c.dir == "" || len(operands) == 0 {
		fs.Usage()
		return nil, fmt.Errorf("--cache and at least one %s are required", operand)
	}
	return operands, nil
}

// open opens the cache, which may reach the insecure registries over
// plain HTTP.
func (c *imageCacheFlags) open(insecure []string) (*images.Cache, error) {
	return images.New(images.Options{
		Dir: c.dir, Platform: c.platform, Insecure: insecure, MaxBytes: int64(c.maxBytes),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
}
