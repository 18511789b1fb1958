package cms

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

func capUnhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCapabilitiesAttribute(t *testing.T) {
	// Hand-checked encodings of single capabilities.
	tests := []struct {
		name string
		cap  Capability
		der  string
	}{
		{"aes128-CBC", Capability{Algorithm: capOIDAES128CBC}, "300b 0609 608648016503040102"},
		{"aes256-GCM", Capability{Algorithm: capOIDAES256GCM}, "300b 0609 60864801650304012e"},
		{"rsaEncryption", Capability{Algorithm: oidRSAEncryption, Parameters: []byte{5, 0}}, "300d 0609 2a864886f70d010101 0500"},
		// RFC 5753 section 7.2: the key wrap algorithm as parameter.
		{"stdDH-sha256kdf with aes256-wrap", DefaultCapabilities()[7], "3015 0606 2b8104010b01 300b 0609 60864801650304012d"},
		// RFC 4055 section 4.1 rSAES-OAEP-SHA256-Params.
		{"RSAES-OAEP SHA-256", DefaultCapabilities()[5],
			"303c 0609 2a864886f70d010107 302f a00f 300d 0609 608648016503040201 0500 a11c 301a 0609 2a864886f70d010108 300d 0609 608648016503040201 0500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := CapabilitiesAttribute([]Capability{tt.cap})
			if err != nil {
				t.Fatal(err)
			}
			want := capUnhex(t, tt.der)
			if !a.Type.Equal(oidSMIMECapabilities) || len(a.Values) != 1 || !bytes.Equal(a.Values[0][2:], want) {
				t.Fatalf("got %x, want SEQUENCE OF %x", a.Values, want)
			}
		})
	}

	def := DefaultCapabilities()
	a, err := CapabilitiesAttribute(def)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseCapabilities(a.Values[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(def) {
		t.Fatalf("%d capabilities back, want %d", len(got), len(def))
	}
	for i := range def {
		if !got[i].Algorithm.Equal(def[i].Algorithm) || !bytes.Equal(got[i].Parameters, def[i].Parameters) {
			t.Fatalf("capability %d: %v, want %v", i, got[i], def[i])
		}
	}
	if !def[0].Algorithm.Equal(capOIDAES256GCM) {
		t.Fatal("AES-256-GCM is not the first preference")
	}

	if _, err := CapabilitiesAttribute(nil); err == nil {
		t.Fatal("empty list accepted")
	}
	if _, err := CapabilitiesAttribute([]Capability{{Algorithm: capOIDAES128CBC, Parameters: []byte{0x02}}}); err == nil {
		t.Fatal("bad parameters accepted")
	}
}

func TestParseCapabilitiesMalformed(t *testing.T) {
	for _, in := range []string{
		"", "31 00", "30 02 0500", "30 04 3002 0500", "30 0f 300d 0609 608648016503040102 0500 05",
		"30 00 00",
	} {
		if _, err := parseCapabilities(capUnhex(t, in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", in, err)
		}
	}
	caps, err := parseCapabilities([]byte{0x30, 0x00})
	if err != nil || caps == nil || len(caps) != 0 {
		t.Errorf("empty SEQUENCE: %v %v", caps, err)
	}
}

func TestKeyPreference(t *testing.T) {
	f := sigPKI(t)
	a := f.identity(t, testpki.RSA2048, false)
	b := f.identity(t, testpki.P256, true)
	attr, err := EncryptionKeyPreferenceAttribute(a.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if !attr.Type.Equal(oidEncryptionKeyPreference) || attr.Values[0][0] != 0xa0 {
		t.Fatalf("attribute %x", attr.Values)
	}
	kp, err := parseKeyPreference(attr.Values[0])
	if err != nil {
		t.Fatal(err)
	}
	ias, _ := marshalIssuerAndSerial(a.Cert)
	if !bytes.Equal(kp.IssuerAndSerial, ias) || kp.SubjectKeyID != nil {
		t.Fatalf("decoded %+v", kp)
	}
	if !kp.Matches(a.Cert) || kp.Matches(b.Cert) {
		t.Fatal("issuer-and-serial preference matches wrongly")
	}

	ski := b.Cert.SubjectKeyId
	rkid := append([]byte{0xa1, byte(len(ski) + 2), 0x04, byte(len(ski))}, ski...)
	alt := append([]byte{0x82, byte(len(ski))}, ski...)
	for name, v := range map[string][]byte{"receipentKeyId": rkid, "subjectAltKeyIdentifier": alt} {
		kp, err := parseKeyPreference(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !kp.Matches(b.Cert) || kp.Matches(a.Cert) {
			t.Fatalf("%s preference matches wrongly", name)
		}
	}
	for _, bad := range [][]byte{nil, {0x83, 0x00}, {0xa0, 0x00}, {0xa1, 0x00}, append(bytes.Clone(alt), 0)} {
		if _, err := parseKeyPreference(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: %v", bad, err)
		}
	}
	var nilPref *KeyPreference
	if nilPref.Matches(a.Cert) || (&KeyPreference{}).Matches(a.Cert) {
		t.Fatal("empty preference matches")
	}
	if _, err := EncryptionKeyPreferenceAttribute(nil); err == nil {
		t.Fatal("nil certificate accepted")
	}
}

func TestAttributeEncoding(t *testing.T) {
	// Values and attributes come out sorted as DER SET OF wants.
	attrs := []Attribute{
		{Type: asn1.ObjectIdentifier{1, 2, 3, 5}, Values: [][]byte{{0x04, 0x01, 0x02}, {0x04, 0x01, 0x01}, {0x02, 0x01, 0x05}}},
		{Type: asn1.ObjectIdentifier{1, 2, 3, 4}, Values: [][]byte{{0x05, 0x00}}},
	}
	der, err := marshalAttributeSet(attrs, 0x31)
	if err != nil {
		t.Fatal(err)
	}
	want := capUnhex(t, "31 1d 3009 0603 2a0304 3102 0500  3010 0603 2a0305 3109 020105 040101 040102")
	if !bytes.Equal(der, want) {
		t.Fatalf("got  %x\nwant %x", der, want)
	}
	back, err := parseAttributeSet("test", der[2:])
	if err != nil || len(back) != 2 || len(back[1].Values) != 3 {
		t.Fatalf("parse back: %v %v", back, err)
	}
	for _, bad := range []string{"", "30 00", "3005 0603 2a0304", "3007 0603 2a0304 3100", "3008 0603 2a0304 3101 05", "04 00"} {
		if _, err := parseAttributeSet("test", capUnhex(t, bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestSigningTimeFormats(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"170d 3330303130323033303430355a", true},     // 300102030405Z
		{"170b 333030313032303330345a", true},         // without seconds, seen in the wild
		{"180f 32303530303130323033303430355a", true}, // 20500102030405Z
		{"1713 3330303130323033303430352e3132335a", false},
		{"170d 3330303130323033303430355b", false},
		{"0400", false},
		{"170d 3330303130323033303430355a 00", false},
	}
	for _, tt := range tests {
		_, err := parseSigningTime(capUnhex(t, tt.in))
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.in, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: unclassified %v", tt.in, err)
		}
	}
}
