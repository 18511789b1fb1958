//go:build linux

package dbus

import (
	"encoding/xml"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

func TestOptionsRoundTrip(t *testing.T) {
	for _, req := range []any{
		ipc.SignRequest{From: "a@x", Identity: "id", Opaque: true, Subject: "s", Counterpart: "c"},
		ipc.EncryptRequest{To: []string{"a@x", "b@x"}, Sign: true, From: "me@x", Subject: "s"},
		ipc.OpenRequest{From: "a@x", Subject: "s"},
		ipc.SignRequest{},
	} {
		opts := encodeOptions(req)
		got := reflect.New(reflect.TypeOf(req))
		if err := decodeOptions(opts, got.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Elem().Interface(), req) {
			t.Errorf("%+v came back as %+v", req, got.Elem().Interface())
		}
	}
	if opts := encodeOptions(ipc.SignRequest{From: "a"}); len(opts) != 1 {
		t.Errorf("zero fields travel: %v", opts)
	}
	var r ipc.SignRequest
	if err := decodeOptions(map[string]godbus.Variant{"opaque": godbus.MakeVariant(uint32(1))}, &r); err == nil {
		t.Error("a uint32 for a bool option was accepted")
	}
	if err := decodeOptions(map[string]godbus.Variant{"unknown": godbus.MakeVariant(1)}, &r); err != nil {
		t.Errorf("an unknown option was refused: %v", err)
	}
}

// Every exported method of object is documented and served, and every
// error name is documented.
func TestDocumentationComplete(t *testing.T) {
	var exported []string
	typ := reflect.TypeFor[object]()
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		if m.Type.NumOut() > 0 && m.Type.Out(m.Type.NumOut()-1) == reflect.TypeFor[*godbus.Error]() {
			exported = append(exported, m.Name)
		}
	}
	var documented []string
	for _, m := range methodDocs() {
		documented = append(documented, m.name)
	}
	slices.Sort(exported)
	slices.Sort(documented)
	if !slices.Equal(exported, documented) {
		t.Errorf("exported methods %v, documented %v", exported, documented)
	}
	docs := errorDocs()
	for _, n := range ipc.AllErrorNames() {
		if docs[n] == "" {
			t.Errorf("error %s is not documented in errorDocs", n)
		}
	}
	x, err := introspectionXML()
	if err != nil {
		t.Fatal(err)
	}
	var node struct {
		Interfaces []struct {
			Name    string `xml:"name,attr"`
			Methods []struct {
				Name string `xml:"name,attr"`
			} `xml:"method"`
		} `xml:"interface"`
	}
	d := xml.NewDecoder(strings.NewReader(x))
	d.Strict = false
	if err := d.Decode(&node); err != nil {
		t.Fatalf("the introspection XML does not parse: %v", err)
	}
	if len(node.Interfaces) != 3 || node.Interfaces[2].Name != Interface || len(node.Interfaces[2].Methods) != len(documented) {
		t.Errorf("parsed XML: %+v", node)
	}
}

func TestMapError(t *testing.T) {
	c := &Client{} // D-Bus errors need no connection
	mapName := func(name string) error { return c.mapError("Status", godbus.Error{Name: name, Body: []any{"m"}}) }
	for _, name := range []string{errServiceUnknown, errNameHasNoOwner, errNoReply, errNoServer, errDisconnected} {
		if err := mapName(name); !errors.Is(err, ErrUnreachable) {
			t.Errorf("%s → %v, want ErrUnreachable", name, err)
		}
	}
	if err := mapName(errUnknownMethod); !isName(err, ipc.Unsupported) {
		t.Errorf("UnknownMethod → %v, want Unsupported", err)
	}
	err := mapName("org.smimed.Error.PinLocked")
	var ie *ipc.Error
	if !errors.As(err, &ie) || ie.Name != ipc.PinLocked || ie.Message != "m" {
		t.Errorf("PinLocked → %#v", err)
	}
	if err := mapName(errInvalidArgs); err == nil || errors.Is(err, ErrUnreachable) {
		t.Errorf("InvalidArgs → %v", err)
	}
}
