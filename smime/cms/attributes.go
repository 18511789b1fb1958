package cms

import (
	"bytes"
	"encoding/asn1"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Attribute is one CMS attribute: a type and its DER-encoded values.
//
// Each element of Values is one complete DER element (tag, length and
// contents), e.g. the OCTET STRING of a messageDigest.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values [][]byte
}

// Limits on attribute sets, against hostile input.
const (
	maxSignedAttrsSize = 64 << 10
	maxAttributes      = 64
	maxAttrValues      = 64
)

// marshalAttribute encodes one Attribute as DER, its values sorted as a
// SET OF requires.
func marshalAttribute(a Attribute) ([]byte, error) {
	if len(a.Values) == 0 {
		return nil, fmt.Errorf("cms: attribute %v has no values", a.Type)
	}
	vals := make([][]byte, len(a.Values))
	for i, v := range a.Values {
		if !isOneDERElement(v) {
			return nil, fmt.Errorf("cms: attribute %v: value %d is not one DER element", a.Type, i)
		}
		vals[i] = v
	}
	slices.SortFunc(vals, bytes.Compare)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.Type)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, v := range vals {
				b.AddBytes(v)
			}
		})
	})
	return b.Bytes()
}

// marshalAttributeSet encodes attributes as a DER SET OF Attribute with the
// given outer tag: SET for the bytes that are signed, [0] or [1] IMPLICIT
// inside a SignerInfo. The members are sorted by their encodings.
func marshalAttributeSet(attrs []Attribute, tag cbasn1.Tag) ([]byte, error) {
	enc := make([][]byte, 0, len(attrs))
	for _, a := range attrs {
		e, err := marshalAttribute(a)
		if err != nil {
			return nil, err
		}
		enc = append(enc, e)
	}
	slices.SortFunc(enc, bytes.Compare)
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		for _, e := range enc {
			b.AddBytes(e)
		}
	})
	return b.Bytes()
}

// isOneDERElement reports whether v is exactly one well-formed DER element
// (as far as cryptobyte's framing checks go).
func isOneDERElement(v []byte) bool {
	s := cryptobyte.String(v)
	var elem cryptobyte.String
	var tag cbasn1.Tag
	return s.ReadAnyASN1Element(&elem, &tag) && s.Empty()
}

// parseAttributeSet parses the contents of a SET OF Attribute (the outer
// tag already removed). An empty set is malformed: RFC 5652 gives signed
// and unsigned attributes SIZE (1..MAX).
func parseAttributeSet(structure string, s cryptobyte.String) ([]Attribute, error) {
	if s.Empty() {
		return nil, malformed(structure, "empty attribute set")
	}
	var attrs []Attribute
	for !s.Empty() {
		if len(attrs) == maxAttributes {
			return nil, malformed(structure, "more than %d attributes", maxAttributes)
		}
		var attr, vals cryptobyte.String
		var a Attribute
		if !s.ReadASN1(&attr, cbasn1.SEQUENCE) ||
			!attr.ReadASN1ObjectIdentifier(&a.Type) ||
			!attr.ReadASN1(&vals, cbasn1.SET) || !attr.Empty() {
			return nil, malformed(structure, "attribute %d is not a SEQUENCE { OID, SET }", len(attrs))
		}
		if vals.Empty() {
			return nil, malformed(structure, "attribute %v has no values", a.Type)
		}
		for !vals.Empty() {
			if len(a.Values) == maxAttrValues {
				return nil, malformed(structure, "attribute %v has more than %d values", a.Type, maxAttrValues)
			}
			var v cryptobyte.String
			var tag cbasn1.Tag
			if !vals.ReadAnyASN1Element(&v, &tag) {
				return nil, malformed(structure, "attribute %v: undecodable value", a.Type)
			}
			a.Values = append(a.Values, []byte(v))
		}
		attrs = append(attrs, a)
	}
	return attrs, nil
}

// findAttribute returns the single attribute of the given type. It is an
// error for the type to appear twice or to carry more than one value
// (RFC 5652 section 11: contentType, messageDigest and signingTime are
// single-valued and must not repeat). found is false when it is absent.
func findAttribute(attrs []Attribute, oid asn1.ObjectIdentifier, name string) (value []byte, found bool, err error) {
	for _, a := range attrs {
		if !a.Type.Equal(oid) {
			continue
		}
		if found {
			return nil, false, malformed("SignerInfo", "%s attribute appears twice", name)
		}
		if len(a.Values) != 1 {
			return nil, false, malformed("SignerInfo", "%s attribute has %d values, want 1", name, len(a.Values))
		}
		value, found = a.Values[0], true
	}
	return value, found, nil
}

// marshalSigningTime encodes t as RFC 5652 section 11.3 asks: UTCTime for
// 1950 to 2049, GeneralizedTime otherwise, in UTC and whole seconds.
func marshalSigningTime(t time.Time) ([]byte, error) {
	t = t.UTC().Truncate(time.Second)
	var b cryptobyte.Builder
	if t.Year() >= 1950 && t.Year() < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
	return b.Bytes()
}

// parseSigningTime decodes a signingTime value.
func parseSigningTime(v []byte) (time.Time, error) {
	s := cryptobyte.String(v)
	var t time.Time
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		if !s.ReadASN1UTCTime(&t) {
			return time.Time{}, malformed("signingTime", "bad UTCTime")
		}
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		if !s.ReadASN1GeneralizedTime(&t) {
			return time.Time{}, malformed("signingTime", "bad GeneralizedTime")
		}
	default:
		return time.Time{}, malformed("signingTime", "neither UTCTime nor GeneralizedTime")
	}
	if !s.Empty() {
		return time.Time{}, malformed("signingTime", "trailing data")
	}
	return t, nil
}

// marshalOIDValue encodes an OBJECT IDENTIFIER value (for contentType).
func marshalOIDValue(oid asn1.ObjectIdentifier) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(oid)
	return b.Bytes()
}

// marshalOctetString encodes an OCTET STRING value (for messageDigest).
func marshalOctetString(p []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1OctetString(p)
	return b.BytesOrPanic()
}
