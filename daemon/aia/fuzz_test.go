package aia

import (
	"errors"
	"testing"
	"time"
)

// FuzzParseResponse feeds arbitrary caIssuers responses to the parser. Seeds
// (testdata/fuzz/FuzzParseResponse): a DER certificate, PEM certificates,
// openssl crl2pkcs7 bundles in DER and PEM, the same in BER, and broken
// variants. Invariants: no panic; an error is ErrMalformed or ErrTooLarge
// and comes without certificates; success gives 1 to maxCerts parsed
// certificates, which survive the disk cache's format unchanged.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PKCS7-----\nMAA=\n-----END PKCS7-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseResponse(data)
		if err != nil {
			if len(certs) != 0 {
				t.Fatalf("%d certificates with error %v", len(certs), err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrTooLarge", err)
			}
			return
		}
		if len(certs) == 0 || len(certs) > maxCerts {
			t.Fatalf("%d certificates without error", len(certs))
		}
		for i, c := range certs {
			if c == nil || len(c.Raw) == 0 {
				t.Fatalf("certificate %d is empty", i)
			}
		}
		when := time.Unix(1700000000, 0)
		back, fetched, err := decodeDisk(encodeDisk("http://ca.example/x", certs, when), "http://ca.example/x")
		if err != nil || !fetched.Equal(when) || len(back) != len(certs) {
			t.Fatalf("disk round trip: %d certificates, %v, %v", len(back), fetched, err)
		}
		for i := range certs {
			if !back[i].Equal(certs[i]) {
				t.Fatalf("disk round trip changed certificate %d", i)
			}
		}
	})
}
