package testrevoke

import (
	"context"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/revocation"
)

// TestFixture checks that the PKI answers what its specs say, through the
// daemon's own revocation checker.
func TestFixture(t *testing.T) {
	p := Start(t,
		Spec{Name: "good", Email: "good@example.org"},
		Spec{Name: "revoked", Email: "revoked@example.org", Revoked: true},
		Spec{Name: "crlrevoked", Email: "crl@example.org", Pointers: CRLOnly, Revoked: true, Reason: "superseded"},
		Spec{Name: "dead", Email: "dead@example.org", Pointers: DeadResponder},
	)
	for _, tc := range []struct {
		name   string
		want   revocation.Status
		reason string
		source string
	}{
		// The responder signs with the issuing CA and includes its
		// certificate: an intermediate, not self-signed (a case the
		// checker once rejected).
		{"good", revocation.Good, "", "ocsp "},
		{"revoked", revocation.Revoked, "keyCompromise", "ocsp "},
		{"crlrevoked", revocation.Revoked, "superseded", "crl "},
		{"dead", revocation.Unknown, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c revocation.Checker
			id := p.Identity(tc.name)
			if len(id.Certificate.EmailAddresses) != 1 {
				t.Errorf("e-mail addresses %v", id.Certificate.EmailAddresses)
			}
			r := c.Check(context.Background(), id.Certificate, p.Intermediate)
			if r.Status != tc.want || r.Reason != tc.reason || !strings.HasPrefix(r.Source, tc.source) {
				t.Errorf("got %+v, want %s %s", r, tc.want, tc.reason)
			}
			if err := id.Certificate.CheckSignatureFrom(p.Intermediate); err != nil {
				t.Error(err)
			}
		})
	}
	if err := p.Intermediate.CheckSignatureFrom(p.Root); err != nil {
		t.Error(err)
	}
}
