package main

import (
	"fmt"
	"strings"
)

// pairFlags collects repeated NAME=VALUE flags, in order.
type pairFlags struct{ names, values []string }

func (p *pairFlags) String() string { return "" }

func (p *pairFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	p.names, p.values = append(p.names, name), append(p.values, value)
	return nil
}

// toMap keeps the last value of each name.
func (p *pairFlags) toMap() map[string]string {
	m := map[string]string{}
	for i := range p.names {
		m[p.names[i]] = p.values[i]
	}
	return m
}
