package configs

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// countKeys are the integer keys that are not sizes: counts, ids and
// depths, which take no unit. Every other integer key of every role is a
// ByteSize; TestEverySizeKeyTakesUnits fails for one that is neither, so a
// new size typed int64 (max_completed_bytes was one, refusing 64MiB) is
// caught here, not by an operator.
var countKeys = map[string]bool{
	"concurrency": true, "max_retries": true, "max_queued_per_instance": true,
	"max_input_files": true, "max_input_depth": true, "max_output_files": true, "max_output_depth": true,
	"pids_limit": true, "disk_quota_files": true, "max_sandboxes": true, "id_base": true,
	"warm_inits": true, "max_concurrent_requests": true,
}

// keyStep is one step of a key's path from the top of a file: a mapping
// key, then, for a list, its first element.
type keyStep struct {
	key  string
	list bool
}

// everyRole is each role's name and a fresh pointer to its defaults, for
// the tests that walk every key of every role's file.
var everyRole = []struct {
	name string
	def  func() any
}{
	{"storage", func() any { c := DefaultStorage(); return &c }},
	{"scheduler", func() any { c := DefaultScheduler(); return &c }},
	{"worker", func() any { c := DefaultWorker(); return &c }},
	{"runner", func() any { c := DefaultRunner(); return &c }},
	{"up", func() any { c := DefaultUp("/d"); return &c }},
}

// TestEverySizeKeyTakesUnits walks every key of every role's file (up's
// sections, the backend tree) and, for each that holds bytes, loads it
// written with a unit and as a plain number of bytes: both give the same
// value, which --print-config prints in a form that loads back to it.
func TestEverySizeKeyTakesUnits(t *testing.T) {
	for _, role := range everyRole {
		var sizes [][]keyStep
		walkIntKeys(reflect.TypeOf(role.def()).Elem(), func(path []keyStep, ty reflect.Type) {
			switch {
			case ty == reflect.TypeFor[ByteSize]():
				sizes = append(sizes, path)
			case !countKeys[path[len(path)-1].key]:
				t.Errorf("%s: %s is a plain %s: type it ByteSize if it holds bytes (sizes take units), or list it in countKeys",
					role.name, pathString(path), ty)
			}
		})
		if len(sizes) == 0 {
			t.Errorf("%s: no size key found", role.name)
		}
		for _, path := range sizes {
			for _, form := range []struct {
				text string
				want ByteSize
			}{{"64MiB", 64 << 20}, {"67108864", 64 << 20}, {"3GiB", 3 << 30}, {"3221225473", 3<<30 + 1}, {"0", 0}} {
				file := "version: 1\n" + fileWith(path, form.text)
				got := role.def()
				if err := parseInto(file, got); err != nil {
					t.Errorf("%s: %s: %s: %v\n%s", role.name, pathString(path), form.text, err, file)
					continue
				}
				if v := valueAt(reflect.ValueOf(got).Elem(), path); v != form.want {
					t.Errorf("%s: %s: %s loads as %d, want %d", role.name, pathString(path), form.text, v, form.want)
				}
				printed, err := marshalAny(got)
				if err != nil {
					t.Fatal(err)
				}
				again := role.def()
				if err := parseInto(string(printed), again); err != nil {
					t.Errorf("%s: %s: %s printed does not load: %v\n%s", role.name, pathString(path), form.text, err, printed)
				} else if v := valueAt(reflect.ValueOf(again).Elem(), path); v != form.want {
					t.Errorf("%s: %s: %s printed loads as %d, want %d", role.name, pathString(path), form.text, v, form.want)
				}
			}
			for _, bad := range []string{"1.5", "1.5GiB", "1e9", "-1", "64MB"} {
				got := role.def()
				err := parseInto("version: 1\n"+fileWith(path, bad), got)
				if err == nil || !strings.Contains(err.Error(), pathString(path)) {
					t.Errorf("%s: %s: %s: %v, want an error naming the key", role.name, pathString(path), bad, err)
				}
			}
		}
	}
}

// walkIntKeys calls found for every key under ty whose value is an
// integer (a ByteSize among them), durations aside, with that type
// (pointers followed). It picks from walkKeys, so that both tests walk
// the same keys.
func walkIntKeys(ty reflect.Type, found func([]keyStep, reflect.Type)) {
	walkKeys(ty, nil, map[reflect.Type]bool{}, func(path []keyStep, ty reflect.Type) {
		for ty.Kind() == reflect.Pointer {
			ty = ty.Elem()
		}
		switch ty.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if ty != reflect.TypeFor[time.Duration]() {
				found(path, ty)
			}
		}
	})
}

// inlinePath reports whether every struct the field at index is promoted
// through is inline in the file (Scheduler's Scheduling).
func inlinePath(ty reflect.Type, index []int) bool {
	for _, i := range index[:len(index)-1] {
		f := ty.Field(i)
		if _, opts, _ := strings.Cut(f.Tag.Get("yaml"), ","); opts != "inline" {
			return false
		}
		ty = f.Type
	}
	return true
}

// fileWith is YAML setting the key at path to value, as written.
func fileWith(path []keyStep, value string) string {
	v := value
	for i := len(path) - 1; i >= 0; i-- {
		if path[i].list {
			v = "[" + v + "]"
		}
		v = path[i].key + ": " + v
		if i > 0 {
			v = "{" + v + "}"
		}
	}
	return v + "\n"
}

// valueAt is the size at path in v.
func valueAt(v reflect.Value, path []keyStep) ByteSize {
	for _, s := range path {
		switch v.Kind() {
		case reflect.Map:
			v = v.MapIndex(reflect.ValueOf(s.key))
		default:
			for _, f := range reflect.VisibleFields(v.Type()) {
				if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == s.key && inlinePath(v.Type(), f.Index) {
					v = v.FieldByIndex(f.Index)
					break
				}
			}
		}
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if s.list {
			v = v.Index(0)
		}
	}
	return ByteSize(v.Int())
}

func pathString(path []keyStep) string {
	var s []string
	for _, p := range path {
		k := p.key
		if p.list {
			k += "[0]"
		}
		s = append(s, k)
	}
	return strings.Join(s, ".")
}

// parseInto is ParseFile for a pointer to one of the role types.
func parseInto(file string, out any) error {
	b := []byte(file)
	switch c := out.(type) {
	case *Storage:
		return ParseFile(b, c)
	case *Scheduler:
		return ParseFile(b, c)
	case *Worker:
		return ParseFile(b, c)
	case *Runner:
		return ParseFile(b, c)
	case *Up:
		return ParseFile(b, c)
	}
	return fmt.Errorf("no role %T", out)
}

// marshalAny is Marshal (--print-config) for a pointer to a role type.
func marshalAny(cfg any) ([]byte, error) {
	switch c := cfg.(type) {
	case *Storage:
		return Marshal(*c)
	case *Scheduler:
		return Marshal(*c)
	case *Worker:
		return Marshal(*c)
	case *Runner:
		return Marshal(*c)
	case *Up:
		return Marshal(*c)
	}
	return nil, fmt.Errorf("no role %T", cfg)
}
