package cms

import (
	"bytes"
	"crypto"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"slices"
	"testing"
)

func TestParseMicalg(t *testing.T) {
	tests := []struct {
		in   string
		want []crypto.Hash
	}{
		{"sha-256", []crypto.Hash{crypto.SHA256}},
		{"sha-384,sha-512", []crypto.Hash{crypto.SHA384, crypto.SHA512}},
		{"SHA1", []crypto.Hash{crypto.SHA1}},
		{"sha-1", []crypto.Hash{crypto.SHA1}},
		{"md5", []crypto.Hash{crypto.MD5}},
		{`"sha-256, md5"`, []crypto.Hash{crypto.SHA256, crypto.MD5}},
		{" sha256 ,sha-256", []crypto.Hash{crypto.SHA256}},
		{"sha-224", []crypto.Hash{crypto.SHA224}},
		{"gostr3411-94,sha-512", []crypto.Hash{crypto.SHA512}},
		{"unknown", nil},
		{"", nil},
		{",,,", nil},
	}
	for _, tt := range tests {
		if got := ParseMicalg(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("ParseMicalg(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestMicalg(t *testing.T) {
	want := map[crypto.Hash]string{
		crypto.MD5: "md5", crypto.SHA1: "sha-1", crypto.SHA224: "sha-224",
		crypto.SHA256: "sha-256", crypto.SHA384: "sha-384", crypto.SHA512: "sha-512",
		crypto.SHA3_256: "unknown", 0: "unknown",
	}
	for h, name := range want {
		if got := Micalg(h); got != name {
			t.Errorf("Micalg(%v) = %q, want %q", h, got, name)
		}
		if name != "unknown" {
			if back := ParseMicalg(name); !slices.Equal(back, []crypto.Hash{h}) {
				t.Errorf("ParseMicalg(Micalg(%v)) = %v", h, back)
			}
		}
	}
}

func TestDigester(t *testing.T) {
	d := NewDigester(crypto.SHA256, crypto.SHA512, crypto.SHA256, crypto.SHA3_256, 0, crypto.MD5, crypto.SHA1, crypto.SHA384)
	data := sigContent(100000)
	d.Write(data[:1])
	d.Write(data[1:5000])
	d.Write(nil)
	d.Write(data[5000:])
	sums := d.Sums()
	s256 := sha256.Sum256(data)
	s512 := sha512.Sum512(data)
	s384 := sha512.Sum384(data)
	s1 := sha1.Sum(data)
	m5 := md5.Sum(data)
	want := map[crypto.Hash][]byte{crypto.SHA256: s256[:], crypto.SHA512: s512[:], crypto.SHA384: s384[:], crypto.SHA1: s1[:], crypto.MD5: m5[:]}
	if len(sums) != len(want) {
		t.Fatalf("%d sums, want %d", len(sums), len(want))
	}
	for h, w := range want {
		if !bytes.Equal(sums[h], w) {
			t.Errorf("%v sum differs", h)
		}
	}
	// Sums does not end the digest.
	d.Write([]byte("more"))
	s256 = sha256.Sum256(append(bytes.Clone(data), "more"...))
	if !bytes.Equal(d.Sums()[crypto.SHA256], s256[:]) {
		t.Error("writing after Sums")
	}
	if len(NewDigester().Sums()) != 0 {
		t.Error("empty digester has sums")
	}
}

func TestHashOIDs(t *testing.T) {
	for _, h := range []crypto.Hash{crypto.MD5, crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		if hashFromOID(hashOID(h)) != h {
			t.Errorf("%v does not round-trip", h)
		}
	}
	if hashOID(crypto.SHA3_256) != nil || hashFromOID(oidData) != 0 {
		t.Error("unknown hash recognised")
	}
}
