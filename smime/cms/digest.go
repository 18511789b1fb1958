package cms

import (
	"crypto"
	_ "crypto/md5"  // register MD5 so old signatures can be checked and called weak
	_ "crypto/sha1" // register SHA-1 likewise
	_ "crypto/sha256"
	_ "crypto/sha512"
	"hash"
	"slices"
	"strings"
)

// Digester computes several digests of the same data at once. The MIME
// layer writes the signed part of a multipart/signed message to it before
// the detached signature arrives, with the hashes named by micalg.
type Digester struct {
	hashes []crypto.Hash
	states []hash.Hash
}

// NewDigester returns a Digester for the given hashes. Duplicates and hashes
// that are not recognised (see SignerInfo.Hash) are ignored.
func NewDigester(hashes ...crypto.Hash) *Digester {
	d := &Digester{}
	for _, h := range hashes {
		if hashOID(h) == nil || !h.Available() || slices.Contains(d.hashes, h) {
			continue
		}
		d.hashes = append(d.hashes, h)
		d.states = append(d.states, h.New())
	}
	return d
}

// Write hashes p with every hash; it never fails.
func (d *Digester) Write(p []byte) (int, error) {
	for _, s := range d.states {
		s.Write(p)
	}
	return len(p), nil
}

// Sums returns the digest of everything written so far under each hash.
// The Digester may be written to further afterwards.
func (d *Digester) Sums() map[crypto.Hash][]byte {
	out := make(map[crypto.Hash][]byte, len(d.hashes))
	for i, h := range d.hashes {
		out[h] = d.states[i].Sum(nil)
	}
	return out
}

// micalgNames are the RFC 8551 section 3.5.3.2 names, then older spellings
// seen in the wild (RFC 2311/3851 used "sha1").
var micalgNames = []struct {
	name string
	hash crypto.Hash
}{
	{"md5", crypto.MD5},
	{"sha-1", crypto.SHA1},
	{"sha-224", crypto.SHA224},
	{"sha-256", crypto.SHA256},
	{"sha-384", crypto.SHA384},
	{"sha-512", crypto.SHA512},
	{"sha1", crypto.SHA1},
	{"sha224", crypto.SHA224},
	{"sha256", crypto.SHA256},
	{"sha384", crypto.SHA384},
	{"sha512", crypto.SHA512},
}

// ParseMicalg maps an RFC 8551 micalg parameter value ("sha-256",
// "sha-384,sha-512", "sha1", "md5") to the hashes it names, in order and
// without duplicates. Names it does not know ("unknown", "gostr3411-94")
// are left out. Case, spaces and surrounding quotes are ignored.
func ParseMicalg(s string) []crypto.Hash {
	var out []crypto.Hash
	for _, part := range strings.Split(strings.Trim(strings.TrimSpace(s), `"`), ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		for _, m := range micalgNames {
			if m.name == part && !slices.Contains(out, m.hash) {
				out = append(out, m.hash)
				break
			}
		}
	}
	return out
}

// Micalg returns the RFC 8551 micalg name of h ("sha-256"), or "unknown"
// for a hash that has none.
func Micalg(h crypto.Hash) string {
	for _, m := range micalgNames {
		if m.hash == h {
			return m.name
		}
	}
	return "unknown"
}
