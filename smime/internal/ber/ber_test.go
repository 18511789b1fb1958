package ber

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func hexb(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	var cur byte
	n := 0
	for _, c := range s {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = byte(c - '0')
		case c >= 'a' && c <= 'f':
			v = byte(c-'a') + 10
		case c == ' ':
			continue
		default:
			t.Fatalf("bad hex %q", c)
		}
		cur = cur<<4 | v
		n++
		if n == 2 {
			out = append(out, cur)
			cur, n = 0, 0
		}
	}
	return out
}

func TestStringReaderForms(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"primitive", "04 03 616263", "abc"},
		{"empty", "04 00", ""},
		{"constructed definite", "24 0a 04 02 6162 04 01 63 04 01 64", "abcd"},
		{"constructed indefinite", "24 80 04 02 6162 04 01 63 0000", "abc"},
		{"nested constructed", "24 80 24 80 04 01 61 0000 04 01 62 0000", "ab"},
		{"implicit [0]", "a0 80 04 02 6869 0000", "hi"},
		{"long form length", "04 81 03 78797a", "xyz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(bytes.NewReader(hexb(t, tt.in)))
			if _, err := d.Next(); err != nil {
				t.Fatal(err)
			}
			r, err := d.StringReader()
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if _, err := d.Next(); err != io.EOF {
				t.Fatalf("after string: %v, want io.EOF", err)
			}
		})
	}
}

func TestWalkAndSkip(t *testing.T) {
	// SEQUENCE (indefinite) { INTEGER 5, [0] indefinite { OCTET STRING }, NULL }
	in := hexb(t, "30 80 02 01 05 a0 80 04 02 0102 0000 05 00 0000")
	d := NewDecoder(bytes.NewReader(in))
	h, err := d.Next()
	if err != nil || !h.Is(ClassUniversal, TagSequence) || !h.Indefinite() {
		t.Fatalf("outer: %v %v", h, err)
	}
	if err := d.Enter(); err != nil {
		t.Fatal(err)
	}
	var tags []string
	for {
		h, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tags = append(tags, h.String())
	}
	want := []string{"universal 2 primitive", "[0] constructed", "universal 5 primitive"}
	if len(tags) != len(want) {
		t.Fatalf("tags %v, want %v", tags, want)
	}
	for i := range want {
		if tags[i] != want[i] {
			t.Fatalf("tags %v, want %v", tags, want)
		}
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("top level: %v", err)
	}
}

func TestReadRawAndDER(t *testing.T) {
	in := hexb(t, "30 80 02 01 05 24 80 04 01 61 04 01 62 0000 0000")
	d := NewDecoder(bytes.NewReader(in))
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	raw, err := d.ReadRaw(100)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, in) {
		t.Fatalf("raw %x", raw)
	}
	der, err := ToDER(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := hexb(t, "30 07 02 01 05 04 02 6162"); !bytes.Equal(der, want) {
		t.Fatalf("der %x, want %x", der, want)
	}
	d = NewDecoder(bytes.NewReader(in))
	d.Next()
	if _, err := d.ReadRaw(10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("limit: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct{ name, in string }{
		{"truncated contents", "04 05 6162"},
		{"truncated header", "30"},
		{"overrun", "30 03 04 05 616263"},
		{"stray EOC", "30 02 0000"},
		{"indefinite primitive", "04 80 0000"},
		{"huge length", "04 89 010000000000000000"},
		{"missing EOC", "30 80 02 01 05"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := walk(NewDecoder(bytes.NewReader(hexb(t, tt.in)))); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestDeepNestingRefused(t *testing.T) {
	var in []byte
	for i := 0; i < maxDepth+2; i++ {
		in = append(in, 0x30, 0x80)
	}
	if err := walk(NewDecoder(bytes.NewReader(in))); !errors.Is(err, ErrSyntax) {
		t.Fatalf("err %v", err)
	}
}

// walk visits every element, descending into constructed ones.
func walk(d *Decoder) error {
	for {
		h, err := d.Next()
		if err == io.EOF {
			if d.Depth() == 0 {
				return nil
			}
			continue
		}
		if err != nil {
			return err
		}
		if h.Constructed {
			if err := d.Enter(); err != nil {
				return err
			}
		} else if err := d.Skip(); err != nil {
			return err
		}
	}
}

func TestEncoderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	e := NewEncoder(&buf)
	e.Begin(ClassUniversal, TagSequence)
	e.Raw([]byte{0x02, 0x01, 0x07})
	w, err := e.StringWriter(ClassContext, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("hello, streaming world")
	w.Write(payload[:5])
	w.Write(payload[5:])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.End(); err != nil {
		t.Fatal(err)
	}
	d := NewDecoder(&buf)
	d.Next()
	d.Enter()
	d.Next()
	d.Skip()
	if h, err := d.Next(); err != nil || !h.Is(ClassContext, 0) {
		t.Fatalf("%v %v", h, err)
	}
	r, _ := d.StringReader()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("got %q %v", got, err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatal("sequence not closed")
	}
}

func TestAppendHeaderLongTag(t *testing.T) {
	got := AppendHeader(nil, ClassContext, 200, true, 300)
	want := hexb(t, "bf 81 48 82 012c")
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x want %x", got, want)
	}
	d := NewDecoder(bytes.NewReader(append(got, make([]byte, 300)...)))
	h, err := d.Next()
	if err != nil || h.Tag != 200 || h.Length != 300 || h.Class != ClassContext {
		t.Fatalf("%+v %v", h, err)
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add([]byte{0x30, 0x80, 0x24, 0x80, 0x04, 0x01, 0x61, 0, 0, 0, 0})
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x05})
	f.Fuzz(func(t *testing.T, in []byte) {
		_ = walk(NewDecoder(bytes.NewReader(in)))
		if der, err := ToDER(in); err == nil {
			if _, err := ToDER(der); err != nil {
				t.Fatalf("DER output does not parse: %v", err)
			}
		}
	})
}
