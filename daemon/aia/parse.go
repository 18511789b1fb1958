package aia

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/smimed/smimed/smime/cms"
)

// parseResponse returns the certificates of a caIssuers response: a DER
// certificate, a DER or BER PKCS #7 SignedData (certs-only, .p7c), or PEM
// holding certificates ("CERTIFICATE", "X509 CERTIFICATE") and PKCS #7
// bundles ("PKCS7", "CMS"). Other PEM blocks are skipped. The error wraps
// ErrMalformed, or ErrTooLarge for more than maxCerts certificates.
func parseResponse(body []byte) ([]*x509.Certificate, error) {
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return parsePEM(trimmed)
	}
	return parseDER(body)
}

func parseDER(der []byte) ([]*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty response", ErrMalformed)
	}
	cert, certErr := x509.ParseCertificate(der)
	if certErr == nil {
		return []*x509.Certificate{cert}, nil
	}
	certs, p7Err := parseBundle(der)
	if p7Err == nil {
		return certs, nil
	}
	return nil, fmt.Errorf("%w: neither a DER certificate (%v) nor a PKCS #7 bundle (%v)", ErrMalformed, certErr, p7Err)
}

// parseBundle returns the certificates of a PKCS #7 SignedData.
func parseBundle(ber []byte) ([]*x509.Certificate, error) {
	sd, _, err := cms.ParseSignedData(ber)
	if err != nil {
		return nil, err
	}
	if len(sd.Certificates) == 0 {
		return nil, fmt.Errorf("the bundle holds no certificate (%d skipped)", sd.SkippedCertificates)
	}
	if len(sd.Certificates) > maxCerts {
		return nil, fmt.Errorf("%w: more than %d certificates", ErrTooLarge, maxCerts)
	}
	return sd.Certificates, nil
}

func parsePEM(data []byte) ([]*x509.Certificate, error) {
	var (
		certs    []*x509.Certificate
		firstErr error
		blocks   int
	)
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		var (
			got []*x509.Certificate
			err error
		)
		switch b.Type {
		case "CERTIFICATE", "X509 CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				got = []*x509.Certificate{c}
			}
		case "PKCS7", "CMS", "PKCS #7 SIGNED DATA":
			got, err = parseBundle(b.Bytes)
		default:
			continue
		}
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("PEM block %d (%s): %v", blocks, b.Type, err)
			}
			continue
		}
		if len(certs)+len(got) > maxCerts {
			return nil, fmt.Errorf("%w: more than %d certificates", ErrTooLarge, maxCerts)
		}
		certs = append(certs, got...)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	if firstErr != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, firstErr)
	}
	return nil, fmt.Errorf("%w: no certificate in the PEM data (%d blocks)", ErrMalformed, blocks)
}
