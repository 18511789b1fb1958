package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// document is one parsed TOML file: its values by section and the line of
// every key, for error messages.
type document struct {
	name   string
	values map[string]any
	lines  map[string]int // dotted key (or section) → line
}

// parseDocument decodes data; a syntax error is an *Error with its line.
func parseDocument(name string, data []byte) (*document, error) {
	doc := &document{name: name, values: map[string]any{}, lines: map[string]int{}}
	if err := toml.Unmarshal(data, &doc.values); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, &Error{File: name, Line: line, Column: col, Key: strings.Join(de.Key(), "."),
				Msg: strings.TrimPrefix(de.Error(), "toml: "), Err: err}
		}
		return nil, &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: "), Err: err}
	}
	doc.indexLines(data)
	return doc, nil
}

// indexLines records the line of every table header and key.
func (d *document) indexLines(data []byte) {
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		var key []string
		line := 0
		it := e.Key()
		for it.Next() {
			n := it.Node()
			key = append(key, string(n.Data))
			if line == 0 && n.Raw.Length > 0 {
				line = p.Shape(n.Raw).Start.Line
			}
		}
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = key
		case unstable.KeyValue:
			key = append(slices.Clone(table), key...)
		default:
			continue
		}
		name := strings.Join(key, ".")
		if _, seen := d.lines[name]; !seen && line > 0 {
			d.lines[name] = line
		}
	}
}

// line returns the line of key, or of its nearest enclosing table; 0 when
// unknown.
func (d *document) line(key string) int {
	for k := key; k != ""; {
		if l, ok := d.lines[k]; ok {
			return l
		}
		best := 0
		for name, l := range d.lines { // a dotted key below k: "k.x = ..."
			if strings.HasPrefix(name, k+".") && (best == 0 || l < best) {
				best = l
			}
		}
		if best > 0 {
			return best
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

func (d *document) errorAt(key, msg string) *Error {
	return &Error{File: d.name, Line: d.line(key), Key: key, Msg: key + ": " + msg}
}

// value returns the value of a dotted "section.key".
func (d *document) value(key string) (any, bool) {
	section, name, _ := strings.Cut(key, ".")
	tbl, ok := d.values[section].(map[string]any)
	if !ok {
		return nil, false
	}
	v, ok := tbl[name]
	return v, ok
}

// checkKeys reports unknown keys (all of them, with lines), sections that
// are not tables, and policy-only keys in a user file.
func (d *document) checkKeys(known map[string]bool, isPolicy bool) error {
	sections := map[string]bool{}
	for k := range known {
		s, _, _ := strings.Cut(k, ".")
		sections[s] = true
	}
	type bad struct {
		key  string
		line int
	}
	var unknown []bad
	for top, v := range d.values {
		if top == "enforce" {
			if !isPolicy {
				return d.errorAt(top, "only the machine policy may enforce keys")
			}
			continue
		}
		if !sections[top] {
			unknown = append(unknown, bad{top, d.line(top)})
			continue
		}
		tbl, ok := v.(map[string]any)
		if !ok {
			return d.errorAt(top, fmt.Sprintf("must be a section ([%s]), not %s", top, typeName(v)))
		}
		for k, v := range tbl {
			full := top + "." + k
			if k == "locked" {
				if !isPolicy {
					return d.errorAt(full, "only the machine policy may lock a section")
				}
				if _, err := boolValue(v); err != nil {
					return d.errorAt(full, err.Error())
				}
				continue
			}
			if !known[full] {
				unknown = append(unknown, bad{full, d.line(full)})
			}
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.SortFunc(unknown, func(a, b bad) int {
		if a.line != b.line {
			return a.line - b.line
		}
		return strings.Compare(a.key, b.key)
	})
	var parts []string
	for _, u := range unknown {
		parts = append(parts, fmt.Sprintf("%s (line %d)", u.key, u.line))
	}
	word := "key"
	if len(unknown) > 1 {
		word = "keys"
	}
	return &Error{File: d.name, Line: unknown[0].line, Key: unknown[0].key,
		Msg: fmt.Sprintf("unknown %s %s; known keys: %s", word, strings.Join(parts, ", "), strings.Join(Keys(), ", "))}
}

// lockedKeys returns the keys a policy locks: every key of a section with
// locked = true, and every key or section listed in enforce.
func (d *document) lockedKeys(known map[string]bool) (map[string]bool, error) {
	locked := map[string]bool{}
	for k := range known {
		section, _, _ := strings.Cut(k, ".")
		if tbl, ok := d.values[section].(map[string]any); ok {
			if b, _ := tbl["locked"].(bool); b {
				locked[k] = true
			}
		}
	}
	raw, ok := d.values["enforce"]
	if !ok {
		return locked, nil
	}
	list, err := stringList(raw)
	if err != nil {
		return nil, d.errorAt("enforce", err.Error())
	}
	for _, name := range list {
		matched := false
		for k := range known {
			if k == name || strings.HasPrefix(k, name+".") {
				locked[k] = true
				matched = true
			}
		}
		if !matched {
			return nil, d.errorAt("enforce", fmt.Sprintf("%q is not a configuration key or section; known keys: %s",
				name, strings.Join(Keys(), ", ")))
		}
	}
	return locked, nil
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

func stringValue(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("must be a string, not %s", typeName(v))
	}
	return s, nil
}

func boolValue(v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("must be true or false, not %s", typeName(v))
	}
	return b, nil
}

func stringList(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("must be an array of strings, not %s", typeName(v))
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("must be an array of strings; it holds %s", typeName(e))
		}
		out = append(out, s)
	}
	return out, nil
}

func durationValue(v any) (time.Duration, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("must be a duration string such as \"10m\" or \"0s\", not %s", typeName(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"10m\" or \"90s\"", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// sizeValue reads a byte count: an integer, or a string with a unit
// ("256MiB", "1 GiB", "500kB").
func sizeValue(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		if n <= 0 {
			return 0, fmt.Errorf("must be positive, not %d", n)
		}
		return n, nil
	case string:
		s := strings.TrimSpace(n)
		i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '_' })
		if i <= 0 {
			return 0, fmt.Errorf("%q is not a size such as 268435456 or \"256MiB\"", n)
		}
		num, err := strconv.ParseInt(strings.ReplaceAll(s[:i], "_", ""), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a size such as 268435456 or \"256MiB\"", n)
		}
		units := map[string]int64{"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
		mult, ok := units[strings.ToLower(strings.TrimSpace(s[i:]))]
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit (use B, kB, MB, GB, KiB, MiB or GiB)", n)
		}
		if num <= 0 || num > math.MaxInt64/mult {
			return 0, fmt.Errorf("%q is out of range", n)
		}
		return num * mult, nil
	}
	return 0, fmt.Errorf("must be a byte count (an integer, or a string such as \"256MiB\"), not %s", typeName(v))
}
