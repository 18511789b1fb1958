//go:build unix

package dbus

import (
	"fmt"
	"reflect"
	"strings"
	"sync"

	godbus "github.com/godbus/dbus/v5"
)

// Options travel as a{sv}. The keys are the JSON names of the ipc request
// struct's fields, and each value has the D-Bus type of its Go field: string
// is s, bool is b, int is i, []string is as, []byte is ay. New fields of the
// ipc request types become new keys without any change here. Unknown keys
// are ignored, so a newer client still works with an older daemon. A known
// key with the wrong type is refused. The prompt requests sent to prompt
// agents (ipc.PromptRequest) travel the same way.

// optionField is one field of an options struct.
type optionField struct {
	key   string
	index int
	sig   string
}

// fieldCache maps a struct type to its optionFields, which every request
// needs and which never change.
var fieldCache sync.Map // reflect.Type → []optionField

// optionFields lists the fields of the struct type t that travel as options.
func optionFields(t reflect.Type) []optionField {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]optionField)
	}
	fs, _ := fieldCache.LoadOrStore(t, listOptionFields(t))
	return fs.([]optionField)
}

func listOptionFields(t reflect.Type) []optionField {
	var fs []optionField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if key == "-" {
			continue
		}
		if key == "" {
			key = f.Name
		}
		fs = append(fs, optionField{key: key, index: i, sig: godbus.SignatureOfType(f.Type).String()})
	}
	return fs
}

// encodeOptions turns a request struct into a{sv}, leaving out zero values.
func encodeOptions(req any) map[string]godbus.Variant {
	v := reflect.ValueOf(req)
	opts := make(map[string]godbus.Variant)
	for _, f := range optionFields(v.Type()) {
		fv := v.Field(f.index)
		if fv.IsZero() {
			continue
		}
		opts[f.key] = godbus.MakeVariant(fv.Interface())
	}
	return opts
}

// decodeOptions fills the struct that req points to from a{sv}.
func decodeOptions(opts map[string]godbus.Variant, req any) error {
	v := reflect.ValueOf(req).Elem()
	for _, f := range optionFields(v.Type()) {
		val, ok := opts[f.key]
		if !ok {
			continue
		}
		if got := val.Signature().String(); got != f.sig {
			return fmt.Errorf("option %q must have type %s, not %s", f.key, f.sig, got)
		}
		fv := v.Field(f.index)
		rv := reflect.ValueOf(val.Value())
		switch {
		case rv.Type().AssignableTo(fv.Type()):
			fv.Set(rv)
		case rv.CanInt() && fv.CanInt():
			// Same signature, another Go type: an int field travels as
			// i and arrives as int32.
			fv.SetInt(rv.Int())
		default:
			return fmt.Errorf("option %q must have type %s", f.key, f.sig)
		}
	}
	return nil
}

// describeOptions documents the keys of an options struct for the
// introspection XML, e.g. "from: s, opaque: b".
func describeOptions(req any) string {
	var parts []string
	for _, f := range optionFields(reflect.TypeOf(req)) {
		parts = append(parts, f.key+": "+f.sig)
	}
	return strings.Join(parts, ", ")
}

// describeJSON documents the JSON shape of a Go value for the introspection
// XML, e.g. "{email: string, certificates: [{sha256: string, ...}]}".
func describeJSON(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return describeJSON(t.Elem())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string (base64)"
		}
		return "[" + describeJSON(t.Elem()) + "]"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Struct:
		var parts []string
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			parts = append(parts, name+": "+describeJSON(f.Type))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return "any"
}
