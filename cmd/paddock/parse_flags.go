package main

import (
	"flag"
	"fmt"
	"strings"
)

// parseFlags parses args into fs and refuses any argument left over: the
// roles take none, and Go's flag package stops at the first argument that
// is not a flag, so "--insecure yes --journal-dir J" silently dropped
// everything from "yes" on, the journal included, while --config (read
// ahead by flagArg) still counted.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return nil
	}
	rest := fs.Args()
	hint := ""
	if i := len(args) - len(rest) - 1; i >= 0 && strings.HasPrefix(args[i], "-") && !strings.Contains(args[i], "=") {
		hint = fmt.Sprintf(" (%s takes no separate value: write %s=%s)", args[i], args[i], rest[0])
	}
	return fmt.Errorf("unexpected argument %q%s; this command takes flags only, and none after it was read", rest[0], hint)
}
