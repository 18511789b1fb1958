package x963kdf

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// TestDeriveKnownAnswer checks a fixed vector (NIST CAVS ANS X9.63-2001,
// SHA-256, empty SharedInfo, 128-bit output), which also matches OpenSSL.
func TestDeriveKnownAnswer(t *testing.T) {
	z := mustHex(t, "96c05619d56c328ab95fe84b18264b08725b85e33fd34f08")
	want := mustHex(t, "443024c3dae66b95e6f5670601558f71")
	got, err := Derive(crypto.SHA256, z, nil, 16)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Derive = %x, want %x", got, want)
	}
}

// openSSLX963 runs OpenSSL's X963KDF implementation.
func openSSLX963(t *testing.T, h crypto.Hash, z, info []byte, keyLen int) []byte {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is needed to cross-check the KDF: %v", err)
	}
	digest := map[crypto.Hash]string{
		crypto.SHA1: "SHA1", crypto.SHA224: "SHA224", crypto.SHA256: "SHA256",
		crypto.SHA384: "SHA384", crypto.SHA512: "SHA512",
	}[h]
	args := []string{"kdf", "-binary", "-keylen", fmt.Sprint(keyLen),
		"-kdfopt", "digest:" + digest,
		"-kdfopt", "hexsecret:" + hex.EncodeToString(z)}
	if len(info) > 0 {
		args = append(args, "-kdfopt", "hexinfo:"+hex.EncodeToString(info))
	}
	args = append(args, "X963KDF")
	var stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	if len(out) != keyLen {
		t.Fatalf("openssl returned %d bytes, want %d", len(out), keyLen)
	}
	return out
}

func TestDeriveMatchesOpenSSL(t *testing.T) {
	z32 := bytes.Repeat([]byte{0x5a, 0xc3, 0x11, 0x7e}, 8)
	z66 := make([]byte, 66) // a P-521 shared secret
	for i := range z66 {
		z66[i] = byte(3*i + 1)
	}
	info, err := SharedInfo(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}, []byte("user keying material"), 256)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		hash   crypto.Hash
		z      []byte
		info   []byte
		keyLen int
	}{
		{crypto.SHA1, z32, info, 16},
		{crypto.SHA1, z32, nil, 20},
		{crypto.SHA1, z32, info, 21},
		{crypto.SHA1, z66, info, 100},
		{crypto.SHA224, z32, info, 24},
		{crypto.SHA224, z32, nil, 29},
		{crypto.SHA256, z32, info, 16},
		{crypto.SHA256, z32, info, 32},
		{crypto.SHA256, z32, info, 33},
		{crypto.SHA256, z66, nil, 1},
		{crypto.SHA256, z66, info, 64},
		{crypto.SHA384, z66, info, 32},
		{crypto.SHA384, z32, info, 97},
		{crypto.SHA512, z66, info, 32},
		{crypto.SHA512, z66, info, 64},
		{crypto.SHA512, z32, nil, 200},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%v/z%d/info%d/len%d", tc.hash, len(tc.z), len(tc.info), tc.keyLen)
		t.Run(name, func(t *testing.T) {
			got, err := Derive(tc.hash, tc.z, tc.info, tc.keyLen)
			if err != nil {
				t.Fatal(err)
			}
			want := openSSLX963(t, tc.hash, tc.z, tc.info, tc.keyLen)
			if !bytes.Equal(got, want) {
				t.Errorf("Derive = %x\nOpenSSL = %x", got, want)
			}
		})
	}
}

// TestDerivePrefix checks that a shorter output is a prefix of a longer one.
func TestDerivePrefix(t *testing.T) {
	z := []byte("shared secret")
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		long, err := Derive(h, z, []byte("info"), 150)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 16, h.Size() - 1, h.Size(), h.Size() + 1, 149} {
			short, err := Derive(h, z, []byte("info"), n)
			if err != nil {
				t.Fatal(err)
			}
			if len(short) != n || cap(short) != n || !bytes.Equal(short, long[:n]) {
				t.Errorf("%v: Derive(%d) is not the %d-byte prefix of Derive(150)", h, n, n)
			}
		}
	}
}

func TestDeriveErrors(t *testing.T) {
	z := []byte{1, 2, 3}
	tests := []struct {
		name   string
		hash   crypto.Hash
		z      []byte
		keyLen int
	}{
		{"MD5", crypto.MD5, z, 16},
		{"SHA-512/256", crypto.SHA512_256, z, 16},
		{"SHA3-256", crypto.SHA3_256, z, 16},
		{"zero hash", crypto.Hash(0), z, 16},
		{"unknown hash", crypto.Hash(999), z, 16},
		{"zero length", crypto.SHA256, z, 0},
		{"negative length", crypto.SHA256, z, -1},
		{"huge length", crypto.SHA256, z, MaxKeyLen + 1},
		{"empty secret", crypto.SHA256, nil, 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := Derive(tc.hash, tc.z, nil, tc.keyLen); err == nil {
				t.Errorf("Derive = %x, want an error", got)
			}
		})
	}
}

func TestSharedInfo(t *testing.T) {
	aes128wrap := asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}
	aes256wrap := asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
	tests := []struct {
		name       string
		oid        asn1.ObjectIdentifier
		ukm        []byte
		keyLenBits int
		want       string
	}{
		{
			// Hand-encoded:
			// 30 15                                  SEQUENCE, 21 bytes
			//   30 0B                                AlgorithmIdentifier
			//     06 09 60 86 48 01 65 03 04 01 05   2.16.840.1.101.3.4.1.5
			//   A2 06                                [2] EXPLICIT
			//     04 04 00 00 00 80                  OCTET STRING, 128
			name: "aes128-wrap no ukm", oid: aes128wrap, ukm: nil, keyLenBits: 128,
			want: "3015 300B 0609608648016503040105 A206 040400000080",
		},
		{
			// As above, plus [0] EXPLICIT OCTET STRING 01 02 03 04
			// (A0 06 04 04 01 02 03 04), so the outer length is 0x1D.
			name: "aes128-wrap with ukm", oid: aes128wrap, ukm: []byte{1, 2, 3, 4}, keyLenBits: 128,
			want: "301D 300B 0609608648016503040105 A006 040401020304 A206 040400000080",
		},
		{
			// 2.16.840.1.101.3.4.1.45, 256 bits = 0x100.
			name: "aes256-wrap no ukm", oid: aes256wrap, ukm: nil, keyLenBits: 256,
			want: "3015 300B 060960864801650304012D A206 040400000100",
		},
		{
			// A non-nil empty ukm is present as an empty OCTET STRING.
			name: "aes256-wrap empty ukm", oid: aes256wrap, ukm: []byte{}, keyLenBits: 256,
			want: "3019 300B 060960864801650304012D A002 0400 A206 040400000100",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SharedInfo(tc.oid, tc.ukm, tc.keyLenBits)
			if err != nil {
				t.Fatal(err)
			}
			want := mustHex(t, tc.want)
			if !bytes.Equal(got, want) {
				t.Errorf("SharedInfo = %X\nwant         %X", got, want)
			}
			// The result must also parse back with encoding/asn1.
			var parsed struct {
				KeyInfo struct {
					Algorithm  asn1.ObjectIdentifier
					Parameters asn1.RawValue `asn1:"optional"`
				}
				EntityUInfo []byte `asn1:"explicit,optional,tag:0"`
				SuppPubInfo []byte `asn1:"explicit,tag:2"`
			}
			rest, err := asn1.Unmarshal(got, &parsed)
			if err != nil || len(rest) != 0 {
				t.Fatalf("asn1.Unmarshal: %v (%d trailing bytes)", err, len(rest))
			}
			if !parsed.KeyInfo.Algorithm.Equal(tc.oid) || len(parsed.KeyInfo.Parameters.FullBytes) != 0 ||
				!bytes.Equal(parsed.EntityUInfo, tc.ukm) {
				t.Errorf("parsed back to %+v", parsed)
			}
		})
	}
}

func TestSharedInfoErrors(t *testing.T) {
	var over32 uint64 = 1 << 33
	tests := []struct {
		name       string
		oid        asn1.ObjectIdentifier
		keyLenBits int
	}{
		{"nil OID", nil, 128},
		{"one-arc OID", asn1.ObjectIdentifier{2}, 128},
		{"invalid first arc", asn1.ObjectIdentifier{3, 1}, 128},
		{"negative arc", asn1.ObjectIdentifier{1, 2, -3}, 128},
		{"zero key length", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}, 0},
		{"negative key length", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}, -128},
		// On 32-bit platforms this truncates to 0, which is rejected too.
		{"key length over 32 bits", asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}, int(over32)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := SharedInfo(tc.oid, nil, tc.keyLenBits); err == nil {
				t.Errorf("SharedInfo = %X, want an error", got)
			}
		})
	}
}

// FuzzSharedInfo checks that every accepted input encodes to DER that
// encoding/asn1 parses back to the same values.
func FuzzSharedInfo(f *testing.F) {
	f.Add([]byte{2, 16, 134, 72, 1, 101, 3, 4, 1, 5}, []byte(nil), false, uint32(128))
	f.Add([]byte{1, 3, 132, 0, 1}, []byte("ukm"), true, uint32(256))
	f.Fuzz(func(t *testing.T, arcs []byte, ukm []byte, withUKM bool, keyLenBits uint32) {
		oid := make(asn1.ObjectIdentifier, len(arcs))
		for i, a := range arcs {
			oid[i] = int(a)
		}
		if !withUKM {
			ukm = nil
		} else if ukm == nil {
			ukm = []byte{}
		}
		der, err := SharedInfo(oid, ukm, int(keyLenBits))
		if err != nil {
			return
		}
		var parsed struct {
			KeyInfo     struct{ Algorithm asn1.ObjectIdentifier }
			EntityUInfo []byte `asn1:"explicit,optional,tag:0"`
			SuppPubInfo []byte `asn1:"explicit,tag:2"`
		}
		if rest, err := asn1.Unmarshal(der, &parsed); err != nil || len(rest) != 0 {
			t.Fatalf("SharedInfo(%v, %x, %d) = %X does not parse: %v", oid, ukm, keyLenBits, der, err)
		}
		if !parsed.KeyInfo.Algorithm.Equal(oid) || !bytes.Equal(parsed.EntityUInfo, ukm) ||
			!bytes.Equal(parsed.SuppPubInfo, binary.BigEndian.AppendUint32(nil, keyLenBits)) {
			t.Fatalf("SharedInfo(%v, %x, %d) parsed back to %+v", oid, ukm, keyLenBits, parsed)
		}
	})
}
