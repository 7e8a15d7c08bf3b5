package rev2

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCheckCommand(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	many := make([]string, 0, 100)
	for range 30 {
		many = append(many, long)
	}
	// Just under 2 MiB as the Command's strings alone count: the kernel
	// adds the program's path (and the runner its default environment),
	// and such a Command passed Execute, then failed to start.
	brim := []string{"/bin/echo"}
	for n := len(brim[0]) + 9; n < 2<<20-200; n += 100<<10 + 9 {
		brim = append(brim, strings.Repeat("y", min(100<<10, 2<<20-200-n-9)))
	}
	env := func(kv ...string) []*repb.Command_EnvironmentVariable {
		var out []*repb.Command_EnvironmentVariable
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &repb.Command_EnvironmentVariable{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		cmd   *repb.Command
		field string // "" = valid
	}{
		{"minimal", &repb.Command{Arguments: []string{"true"}}, ""},
		{"outputs 2.0", &repb.Command{Arguments: []string{"true"}, WorkingDirectory: "pkg",
			OutputFiles: []string{"a", "a-b", "b/c"}, OutputDirectories: []string{"", "../out", "d"}}, ""},
		{"outputs 2.1", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"a", "a/b", "c"}}, ""},
		{"2.1 ignores 2.0 fields", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"a"}, OutputFiles: []string{"/abs"}}, ""},
		{"no arguments", &repb.Command{}, "command.arguments"},
		{"unknown output node property", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"a"}, OutputNodeProperties: []string{"mtime"}}, "command.output_node_properties[0]"},
		{"empty program", &repb.Command{Arguments: []string{""}}, "command.arguments[0]"},
		{"NUL in argument", &repb.Command{Arguments: []string{"echo", "a\x00b"}}, "command.arguments[1]"},
		{"argument over MAX_ARG_STRLEN", &repb.Command{Arguments: []string{"echo", strings.Repeat("x", 200<<10)}}, "command.arguments[1]"},
		{"argv over ARG_MAX", &repb.Command{Arguments: append([]string{"echo"}, many...)}, "command.arguments"},
		{"argv at ARG_MAX without the program's path", &repb.Command{Arguments: brim}, "command.arguments"},
		{"working directory pkg/", &repb.Command{Arguments: []string{"true"}, WorkingDirectory: "pkg/"}, "command.working_directory"},
		{"working directory /abs", &repb.Command{Arguments: []string{"true"}, WorkingDirectory: "/abs"}, "command.working_directory"},
		{"working directory ../x", &repb.Command{Arguments: []string{"true"}, WorkingDirectory: "../x"}, "command.working_directory"},
		{"working directory .", &repb.Command{Arguments: []string{"true"}, WorkingDirectory: "."}, "command.working_directory"},
		{"output escapes through wd", &repb.Command{Arguments: []string{"true"}, WorkingDirectory: "a", OutputFiles: []string{"../../x"}}, "command.output_files[0]"},
		{"output paths unsorted", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"b", "a"}}, "command.output_paths[1]"},
		{"output paths duplicated", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"a", "a"}}, "command.output_paths[1]"},
		{"output path absolute", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"/etc/passwd"}}, "command.output_paths[0]"},
		{"output path a/", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"a/"}}, "command.output_paths[0]"},
		{"output path a//b", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"a//b"}}, "command.output_paths[0]"},
		{"output path a/./b", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"a/./b"}}, "command.output_paths[0]"},
		// "." names the working directory, as "" does; both name it twice.
		{"output paths \"\" and .", &repb.Command{Arguments: []string{"true"}, OutputPaths: []string{"", "."}}, "command.output_paths[1]"},
		{"output file .", &repb.Command{Arguments: []string{"true"}, OutputFiles: []string{"."}}, "command.output_files[0]"},
		{"output file unsorted", &repb.Command{Arguments: []string{"true"}, OutputFiles: []string{"b", "a"}}, "command.output_files[1]"},
		{"output directory duplicated", &repb.Command{Arguments: []string{"true"}, OutputDirectories: []string{"d", "d"}}, "command.output_directories[1]"},
		{"output file parent of another", &repb.Command{Arguments: []string{"true"}, OutputFiles: []string{"a", "a-b", "a/b"}}, "command.output_files[0]"},
		{"output file is also a directory", &repb.Command{Arguments: []string{"true"}, OutputFiles: []string{"a"}, OutputDirectories: []string{"a"}}, "command.output_files[0]"},
		{"env unsorted is accepted", &repb.Command{Arguments: []string{"true"}, EnvironmentVariables: env("B", "1", "A", "2")}, ""},
		{"env name with =", &repb.Command{Arguments: []string{"true"}, EnvironmentVariables: env("A=B", "1")}, "command.environment_variables[0]"},
		{"env empty name", &repb.Command{Arguments: []string{"true"}, EnvironmentVariables: env("", "1")}, "command.environment_variables[0]"},
		{"env name given twice", &repb.Command{Arguments: []string{"true"}, EnvironmentVariables: env("DUP", "first", "DUP", "second")}, "command.environment_variables[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkCommandRefusal(t, tc.cmd, tc.field) })
	}
}

// checkCommandRefusal checks that CheckCommand accepts cmd (field "") or
// refuses it with INVALID_ARGUMENT naming field, in a bounded message.
func checkCommandRefusal(t *testing.T, cmd *repb.Command, field string) {
	t.Helper()
	err := CheckCommand(cmd)
	if field == "" {
		if err != nil {
			t.Fatalf("CheckCommand: %v, want nil", err)
		}
		return
	}
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), field+": ") {
		t.Fatalf("CheckCommand = %v, want INVALID_ARGUMENT starting with %q", err, field)
	}
	if len(st.Message()) > 600 {
		t.Errorf("message is %d bytes long; messages are bounded", len(st.Message()))
	}
}

func TestOutputPaths(t *testing.T) {
	c := &repb.Command{WorkingDirectory: "w", OutputFiles: []string{"f"}, OutputDirectories: []string{"", "d"}}
	if got, want := strings.Join(OutputPaths(c), ","), "w/f,w,w/d"; got != want {
		t.Errorf("OutputPaths (2.0) = %s, want %s", got, want)
	}
	c.OutputPaths = []string{"p"}
	if got, want := strings.Join(OutputPaths(c), ","), "w/p"; got != want {
		t.Errorf("OutputPaths (2.1) = %s, want %s", got, want)
	}
}

func TestQuoteBounds(t *testing.T) {
	if q := Quote(strings.Repeat("a", 1<<20)); len(q) > 300 || !strings.Contains(q, "1048576 bytes") {
		t.Errorf("Quote of 1 MiB = %d bytes %q…, want it cut short with the length", len(q), q[:50])
	}
	if q := Quote("a\nb"); q != `"a\nb"` {
		t.Errorf("Quote = %s", q)
	}
}
