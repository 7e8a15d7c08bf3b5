package configs

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"
)

// This file is fileCheck's judgement of one value: a scalar of the wrong
// type, or none. yaml.v3's Decode reports the first as a *yaml.TypeError
// of messages without the key ("line 3: cannot unmarshal !!int `30` into
// time.Duration") and takes the second silently, keeping the default for
// a scalar and emptying a list or map. Whether a value decodes is still
// Decode's to say (scalarValue tries it on the node alone), so the two
// cannot disagree; only the message is written here.

// isEmpty reports whether n is a key's missing value: `key:`, `key: ~`
// or `key: null`.
func isEmpty(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// emptyKey is the error for a key of type t written without a value.
// It is refused rather than taken as the default: an operator who wrote
// the key meant to set it. (A section, and an optional key, which
// --print-config writes as null when unset, take null: fileCheck.node.)
func emptyKey(n *yaml.Node, t reflect.Type) error {
	msg := fmt.Sprintf("line %d: the value is empty; remove the line for the default", n.Line)
	switch t.Kind() {
	case reflect.Slice:
		msg += ", or write [] for none"
	case reflect.Map:
		msg += ", or write {} for none"
	}
	return errors.New(msg)
}

// scalarValue checks n, which decodes into t, a type that holds one
// value (a string, number, bool or duration).
func scalarValue(n *yaml.Node, t reflect.Type) error {
	if n.Kind != yaml.ScalarNode {
		return wrongValue(n, t)
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Tag == "!!float" && t != durationType { // Decode would truncate it
			return fmt.Errorf("line %d: %s is not a whole number", n.Line, n.Value)
		}
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		if t == durationType {
			if _, err := time.ParseDuration(n.Value + "s"); err == nil {
				return fmt.Errorf("line %d: %s is a number; a duration needs a unit, e.g. %ss", n.Line, n.Value, n.Value)
			}
		}
		return wrongValue(n, t)
	}
	if t == durationType {
		if d, err := time.ParseDuration(n.Value); err == nil && d < 0 {
			return fmt.Errorf("line %d: %s is negative; a duration is 0 or more", n.Line, n.Value)
		}
	}
	return nil
}

// wrongValue is the error for n, which does not decode into t: what t
// wants, then what n is, then how to write it when that is plain (a
// number in quotes, one value for a list).
func wrongValue(n *yaml.Node, t reflect.Type) error {
	msg := fmt.Sprintf("line %d: want %s, not %s", n.Line, wanted(t), describe(n))
	switch {
	case n.Kind != yaml.ScalarNode:
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		msg += fmt.Sprintf("; write [%s] for a list of one", n.Value)
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && t.Kind() != reflect.Slice && t.Kind() != reflect.Map:
		plain := yaml.Node{Kind: yaml.ScalarNode, Value: n.Value, Line: n.Line}
		if plain.Decode(reflect.New(t).Interface()) == nil {
			msg += " (a string: remove the quotes)"
		}
	}
	return errors.New(msg)
}

// wanted says what a value of type t is written as.
func wanted(t reflect.Type) string {
	switch k := t.Kind(); {
	case t == durationType:
		return "a duration with a unit (90s, 15m, 1h)"
	case k == reflect.Bool:
		return "true or false"
	case k >= reflect.Int && k <= reflect.Int64:
		if t.Bits() < 64 {
			return fmt.Sprintf("a whole number from %d to %d", -1<<(t.Bits()-1), 1<<(t.Bits()-1)-1)
		}
		return "a whole number"
	case k >= reflect.Uint && k <= reflect.Uint64:
		return fmt.Sprintf("a whole number from 0 to %d", uint64(math.MaxUint64)>>(64-t.Bits()))
	case k == reflect.Float32 || k == reflect.Float64:
		return "a number"
	case k == reflect.String:
		return "a string"
	case k == reflect.Slice || k == reflect.Array:
		return "a list"
	}
	return "keys under it" // a map or a section
}

// describe is what n is, for an error saying it is not what was wanted.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "keys"
	}
	return fmt.Sprintf("%q", n.Value)
}
