package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/paddock-build/paddock/configs"
)

// A role's effective config is its defaults (configs.Default…), then its
// --config file, then its flags: the file is read before the flags are
// registered, each flag writing into the loaded config, so a flag given on
// the command line wins and one left out keeps the file's value (and the
// help shows it as the default).

// loadRoleConfig returns def() with the file named by the command line's
// --config (if any) loaded over it. With -h it reads no file: the flag set
// then prints the help.
func loadRoleConfig[T any](args []string, def func() T) (T, error) {
	cfg := def()
	if path := flagArg(args, "config"); path != "" && !helpAsked(args) {
		if err := configs.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// flagArg is the value of the last -name or --name flag in args, before
// a "--"; "" when there is none. It reads the command line ahead of the
// flag set, which parses it again (and reports any error in it).
func flagArg(args []string, name string) string {
	v := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, p := range []string{"-" + name, "--" + name} {
			if a == p && i+1 < len(args) {
				v = args[i+1]
				i++
			} else if rest, ok := strings.CutPrefix(a, p+"="); ok {
				v = rest
			}
		}
	}
	return v
}

// helpAsked reports whether args ask for the help, before any "--".
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

// configFlags are the flags every role with a config file takes: --config
// (read by loadRoleConfig) and --print-config.
type configFlags struct {
	path  string
	print bool
}

func (c *configFlags) register(fs *flag.FlagSet, example string) {
	fs.StringVar(&c.path, "config", "", "YAML `FILE` of config, starting with version: 1 (see "+example+"); flags override it")
	fs.BoolVar(&c.print, "print-config", false, "print the effective config (defaults, then --config, then flags) as YAML and exit")
}

// printConfig writes cfg as a config file that --config reads back, with
// notes as comments beside their keys (configs.MarshalNoted).
func printConfig[T any](w io.Writer, cfg T, notes map[string]string) error {
	b, err := configs.MarshalNoted(cfg, notes)
	if err != nil {
		return fmt.Errorf("print config: %w", err)
	}
	_, err = w.Write(b)
	return err
}

// byteSizeFlag registers a size flag that writes into dst.
func byteSizeFlag(fs *flag.FlagSet, dst *configs.ByteSize, name, usage string) {
	fs.Var(dst, name, usage+" (a size: 512MiB, 10GiB, or bytes)")
}

// platformFlag is the repeatable --platform NAME=VALUE: given at least
// once, it replaces the config's list.
type platformFlag struct {
	dst *[]configs.Property
	set bool
}

func (p *platformFlag) String() string {
	if p.dst == nil {
		return ""
	}
	var s []string
	for _, q := range *p.dst {
		s = append(s, q.Name+"="+q.Value)
	}
	return strings.Join(s, ",")
}

func (p *platformFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	if !p.set {
		*p.dst, p.set = nil, true
	}
	*p.dst = append(*p.dst, configs.Property{Name: name, Value: value})
	return nil
}
