package prompt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const testPIN = "493817"

func TestSecretRedactedByFmt(t *testing.T) {
	s := NewSecret([]byte(testPIN))
	defer s.Wipe()
	type holder struct {
		Name string
		PIN  *Secret
		Val  Secret
	}
	h := holder{Name: "x", PIN: s, Val: *s}
	for _, format := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x", "%X", "%d", "%10.3s", "%T %v"} {
		for _, v := range []any{s, *s, h, &h, []any{s}} {
			out := fmt.Sprintf(format, v)
			if strings.Contains(out, testPIN) || strings.Contains(out, fmt.Sprintf("%x", testPIN)) ||
				strings.Contains(out, "52 57 51") || strings.Contains(out, "[52") {
				t.Errorf("Sprintf(%q, %T) leaks the PIN: %s", format, v, out)
			}
		}
	}
	for _, v := range []any{s, *s} {
		if got := fmt.Sprint(v); got != "[redacted]" {
			t.Errorf("Sprint(%T) = %q", v, got)
		}
		if got := fmt.Sprintf("%#v", v); got != "[redacted]" {
			t.Errorf("%%#v of %T = %q", v, got)
		}
	}
	if got := s.String() + s.GoString(); got != "[redacted][redacted]" {
		t.Errorf("String/GoString = %q", got)
	}
	if got := fmt.Errorf("failed with %v", s).Error(); got != "failed with [redacted]" {
		t.Errorf("error text = %q", got)
	}
}

func TestSecretRedactedBySlogAndJSON(t *testing.T) {
	s := NewSecret([]byte(testPIN))
	defer s.Wipe()
	for _, newHandler := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(newHandler(&buf))
		log.Info("login", "pin", s, "value", *s, slog.Any("any", s), slog.Group("g", "pin", s))
		out := buf.String()
		if strings.Contains(out, testPIN) {
			t.Errorf("slog output leaks the PIN: %s", out)
		}
		if strings.Count(out, "[redacted]") != 4 {
			t.Errorf("slog output: want 4 [redacted], got %s", out)
		}
	}
	js, err := json.Marshal(struct {
		P *Secret
		V Secret
	}{s, *s})
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != `{"P":"[redacted]","V":"[redacted]"}` {
		t.Errorf("json = %s", js)
	}
}

func TestSecretWipe(t *testing.T) {
	src := []byte(testPIN)
	s := NewSecret(src)
	clear(src)
	if s.Len() != len(testPIN) || string(s.Bytes()) != testPIN {
		t.Fatalf("Secret does not hold its own copy: %d bytes", s.Len())
	}
	b := s.Bytes()
	s.Wipe()
	if !bytes.Equal(b, make([]byte, len(testPIN))) {
		t.Errorf("Wipe left the bytes: %v", b)
	}
	if s.Bytes() != nil || s.Len() != 0 {
		t.Errorf("wiped Secret still has %d bytes", s.Len())
	}
	s.Wipe() // twice is fine

	var nilSecret *Secret
	nilSecret.Wipe()
	if nilSecret.Bytes() != nil || nilSecret.Len() != 0 {
		t.Error("nil Secret not empty")
	}
	if NewSecret(nil).Bytes() != nil {
		t.Error("empty Secret Bytes not nil")
	}
}
