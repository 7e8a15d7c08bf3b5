package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/paddock-build/paddock/images"
)

const imagesUsage = `usage: paddock images load --cache DIR [--platform OS/ARCH] FILE...

FILE is an OCI image layout directory or a 'docker save' tarball. Its images
are unpacked into the runner's image cache, so actions can name them by tag
or digest without registry access. Stop the runner first: one process owns
the cache at a time.
`

func runImages(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "load" {
		fmt.Fprint(os.Stderr, imagesUsage)
		return errors.New("want a subcommand: load")
	}
	fs := flag.NewFlagSet("images load", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), imagesUsage); fs.PrintDefaults() }
	cacheDir := fs.String("cache", "", "the runner's image cache directory (required)")
	platform := fs.String("platform", "", "platform picked from multi-platform images (default linux/<this machine>)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *cacheDir == "" || fs.NArg() == 0 {
		fs.Usage()
		return errors.New("--cache and at least one FILE are required")
	}
	cache, err := images.New(images.Options{
		Dir:      *cacheDir,
		Platform: *platform,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	defer cache.Close()
	for _, file := range fs.Args() {
		loaded, err := cache.Load(ctx, file)
		if err != nil {
			return err
		}
		for _, li := range loaded {
			fmt.Println(li.Digest)
			for _, n := range li.Names {
				fmt.Printf("  %s\n", n)
			}
		}
	}
	return nil
}
