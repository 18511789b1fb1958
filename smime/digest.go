package smime

import (
	"bytes"
	"crypto"
	"encoding"
	"hash"
)

// dualDigest hashes the signed part of a multipart/signed message twice
// over: as canonical text (every bare LF made CRLF) and as received. The
// two streams are equal until the first bare LF; only then is the
// canonical state cloned into a second set of hashes, so a message with
// CRLF line breaks (the usual case) is hashed once.
type dualDigest struct {
	hashes   []crypto.Hash
	canon    []hash.Hash
	raw      []hash.Hash // nil until the streams diverge
	eager    bool        // some hash cannot be cloned: raw hashed from the start
	prevCR   bool
	diverged bool
}

func newDualDigest(hs []crypto.Hash) *dualDigest {
	d := &dualDigest{}
	for _, h := range hs {
		if !h.Available() {
			continue
		}
		dup := false
		for _, x := range d.hashes {
			dup = dup || x == h
		}
		if dup {
			continue
		}
		s := h.New()
		if _, ok := s.(encoding.BinaryMarshaler); !ok {
			d.eager = true
		}
		d.hashes = append(d.hashes, h)
		d.canon = append(d.canon, s)
	}
	if d.eager {
		for _, h := range d.hashes {
			d.raw = append(d.raw, h.New())
		}
	}
	return d
}

func (d *dualDigest) write(p []byte) {
	for _, s := range d.canon {
		s.Write(p)
	}
	if d.raw != nil {
		for _, s := range d.raw {
			s.Write(p)
		}
	}
}

// diverge starts the raw hashes from the canonical state.
func (d *dualDigest) diverge() {
	d.diverged = true
	if d.raw != nil {
		return
	}
	for i, s := range d.canon {
		st, err := s.(encoding.BinaryMarshaler).MarshalBinary()
		r := d.hashes[i].New()
		if err == nil {
			err = r.(encoding.BinaryUnmarshaler).UnmarshalBinary(st)
		}
		if err != nil {
			// Cannot happen with the standard library's hashes; the raw
			// digest is then simply wrong and only the canonical one can
			// match.
			r = d.hashes[i].New()
		}
		d.raw = append(d.raw, r)
	}
}

// Write hashes p; it never fails.
func (d *dualDigest) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	start := 0
	for i := 0; i < len(p); i++ {
		k := bytes.IndexByte(p[i:], '\n')
		if k < 0 {
			break
		}
		i += k
		cr := d.prevCR
		if i > 0 {
			cr = p[i-1] == '\r'
		}
		if cr {
			continue
		}
		// Bare LF: the canonical stream gets CRLF, the raw one LF.
		for _, s := range d.canon {
			s.Write(p[start:i])
		}
		if d.raw != nil {
			for _, s := range d.raw {
				s.Write(p[start:i])
			}
		}
		if !d.diverged {
			d.diverge()
		}
		for _, s := range d.canon {
			s.Write([]byte("\r\n"))
		}
		for _, s := range d.raw {
			s.Write([]byte("\n"))
		}
		start = i + 1
	}
	d.write(p[start:])
	d.prevCR = p[len(p)-1] == '\r'
	return len(p), nil
}

// sums returns the canonical digests and the as-received ones; raw is nil
// when the two are the same bytes.
func (d *dualDigest) sums() (canon, raw map[crypto.Hash][]byte) {
	canon = make(map[crypto.Hash][]byte, len(d.hashes))
	for i, h := range d.hashes {
		canon[h] = d.canon[i].Sum(nil)
	}
	if !d.diverged {
		return canon, nil
	}
	raw = make(map[crypto.Hash][]byte, len(d.hashes))
	for i, h := range d.hashes {
		raw[h] = d.raw[i].Sum(nil)
	}
	return canon, raw
}
