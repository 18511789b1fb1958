package prompt

import (
	"strconv"
	"strings"
	"testing"
)

func TestDescription(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{
			name: "sign on a token with subject, recipient and tries",
			req: Request{Kind: PIN, Operation: OpSign, KeyLabel: "CN=Alice Example,O=Example",
				TokenLabel: "Alice's PIV card", Subject: "Quarterly report", Counterpart: "bob@example.com", TriesLeft: 2},
			want: "Enter the PIN to sign a message.\n\n" +
				"Message: \"Quarterly report\" to bob@example.com\n" +
				"Key: CN=Alice Example,O=Example\n" +
				"Token: Alice's PIV card\n\n" +
				"2 tries left.",
		},
		{
			name: "decrypt on a token, sender only, final try",
			req:  Request{Kind: PIN, Operation: OpDecrypt, KeyLabel: "CN=Alice", TokenLabel: "Token A", Counterpart: "carol@example.com", TriesLeft: 1},
			want: "Enter the PIN to decrypt a message.\n\n" +
				"Message from carol@example.com\n" +
				"Key: CN=Alice\n" +
				"Token: Token A\n\n" +
				"FINAL try: a wrong PIN locks the card.",
		},
		{
			name: "decrypt with subject and sender, tries unknown",
			req:  Request{Kind: PIN, Operation: OpDecrypt, KeyLabel: "CN=Alice", TokenLabel: "Token A", Subject: "Payroll", Counterpart: "hr@example.com", TriesLeft: TriesUnknown},
			want: "Enter the PIN to decrypt a message.\n\n" +
				"Message: \"Payroll\" from hr@example.com\n" +
				"Key: CN=Alice\n" +
				"Token: Token A",
		},
		{
			name: "sign with a subject but no recipient",
			req:  Request{Kind: PIN, Operation: OpSign, KeyLabel: "CN=Alice", TokenLabel: "T", Subject: "Hello", TriesLeft: 3},
			want: "Enter the PIN to sign a message.\n\nMessage: \"Hello\"\nKey: CN=Alice\nToken: T\n\n3 tries left.",
		},
		{
			name: "software key passphrase, no message facts",
			req:  Request{Kind: Passphrase, Operation: OpSign, KeyLabel: "CN=Alice", TriesLeft: TriesUnknown},
			want: "Enter the passphrase to sign a message.\n\nKey: CN=Alice",
		},
		{
			name: "passphrase final try on a software key",
			req:  Request{Kind: Passphrase, Operation: OpDecrypt, KeyLabel: "CN=Alice", TriesLeft: 1},
			want: "Enter the passphrase to decrypt a message.\n\nKey: CN=Alice\n\nFINAL try: a wrong passphrase locks the key.",
		},
		{
			name: "zero tries (the zero Request) shows nothing",
			req:  Request{Kind: Passphrase, Operation: OpSign, KeyLabel: "CN=Alice"},
			want: "Enter the passphrase to sign a message.\n\nKey: CN=Alice",
		},
		{
			name: "unlock and import",
			req:  Request{Kind: Passphrase, Operation: OpUnlock, TriesLeft: TriesUnknown},
			want: "Enter the passphrase to unlock your keys.",
		},
		{
			name: "import names the file",
			req:  Request{Kind: Passphrase, Operation: OpImport, KeyLabel: "alice.p12", TriesLeft: TriesUnknown},
			want: "Enter the passphrase to import a key.\n\nKey: alice.p12",
		},
		{
			name: "confirm never shows tries",
			req:  Request{Kind: Confirm, Operation: OpDecrypt, KeyLabel: "CN=Alice", Subject: "Hi", Counterpart: "dave@example.com", TriesLeft: 3},
			want: "Allow decrypting a message?\n\nMessage: \"Hi\" from dave@example.com\nKey: CN=Alice",
		},
		{
			name: "PIN pad notice",
			req:  Request{Kind: Notice, Operation: OpSign, KeyLabel: "CN=Alice", TokenLabel: "Reader with pad", Subject: "Contract", TriesLeft: 3},
			want: "Enter the PIN on the reader's PIN pad to sign a message.\n\n" +
				"Message: \"Contract\"\nKey: CN=Alice\nToken: Reader with pad\n\n3 tries left.",
		},
		{
			name: "unknown operation is shown, cleaned",
			req:  Request{Kind: PIN, Operation: "derive\n", TriesLeft: TriesUnknown},
			want: "Enter the PIN to derive with your key.",
		},
		{
			name: "no operation",
			req:  Request{Kind: PIN, TriesLeft: TriesUnknown},
			want: "Enter the PIN to use your key.",
		},
		{
			name: "hostile subject cannot add lines or reverse text",
			req: Request{Kind: PIN, Operation: OpSign, TriesLeft: TriesUnknown,
				Subject: "Hi\n\nThis prompt is safe\r\u202egnp.exe\u200b\x00", Counterpart: "eve@example.com\n"},
			want: "Enter the PIN to sign a message.\n\nMessage: \"Hi This prompt is safe gnp.exe\" to eve@example.com",
		},
		{
			name: "invalid UTF-8 is replaced",
			req:  Request{Kind: PIN, Operation: OpSign, KeyLabel: "CN=\xff\xfeBob", TriesLeft: TriesUnknown},
			want: "Enter the PIN to sign a message.\n\nKey: CN=\uFFFDBob",
		},
		{
			name: "long subject is cut",
			req:  Request{Kind: PIN, Operation: OpSign, Subject: strings.Repeat("x", 200), TriesLeft: TriesUnknown},
			want: "Enter the PIN to sign a message.\n\nMessage: \"" + strings.Repeat("x", maxSubject) + "...\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.req.Description(); got != tt.want {
				t.Errorf("Description() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// Issue 4: "a PIN prompt that says what is being signed and how many tries
// are left" — checked as a property over the tries a token can report.
func TestDescriptionSaysWhatAndTries(t *testing.T) {
	for tries := 1; tries <= 10; tries++ {
		r := Request{Kind: PIN, Operation: OpSign, Subject: "Budget", Counterpart: "bob@example.com", KeyLabel: "CN=A", TokenLabel: "T", TriesLeft: tries}
		d := r.Description()
		for _, want := range []string{"sign", `"Budget"`, "bob@example.com", "CN=A", "T"} {
			if !strings.Contains(d, want) {
				t.Errorf("tries=%d: description lacks %q:\n%s", tries, want, d)
			}
		}
		var want string
		switch tries {
		case 1:
			want = "FINAL try: a wrong PIN locks the card."
		default:
			want = strconv.Itoa(tries) + " tries left."
		}
		if !strings.Contains(d, want) {
			t.Errorf("tries=%d: description lacks %q:\n%s", tries, want, d)
		}
	}
}

func TestWindowTitle(t *testing.T) {
	tests := []struct {
		req  Request
		want string
	}{
		{Request{Kind: PIN}, "smimed: PIN"},
		{Request{Kind: Passphrase}, "smimed: passphrase"},
		{Request{Kind: Confirm}, "smimed: confirm"},
		{Request{Kind: Notice}, "smimed: PIN pad"},
		{Request{Kind: PIN, Title: "Custom\ntitle"}, "Custom title"},
		{Request{}, "smimed"},
	}
	for _, tt := range tests {
		if got := tt.req.WindowTitle(); got != tt.want {
			t.Errorf("%+v.WindowTitle() = %q, want %q", tt.req, got, tt.want)
		}
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		k     Kind
		name  string
		valid bool
	}{
		{PIN, "pin", true}, {Passphrase, "passphrase", true}, {Confirm, "confirm", true},
		{Notice, "notice", true}, {0, "kind(0)", false}, {99, "kind(99)", false},
	}
	for _, tt := range tests {
		if tt.k.String() != tt.name || tt.k.Valid() != tt.valid {
			t.Errorf("Kind %d: String %q Valid %v, want %q %v", int(tt.k), tt.k.String(), tt.k.Valid(), tt.name, tt.valid)
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"", 10, ""},
		{"  lead and trail  ", 40, "lead and trail"},
		{"a\t\tb", 10, "a b"},
		{"abcdef", 3, "abc..."},
		{"abc", 3, "abc"},
		{"ab cd", 3, "ab..."},
		{"\u202e\u2066x\u2069", 5, "x"},
		{"line\u2028sep", 20, "line sep"},
	}
	for _, tt := range tests {
		if got := clean(tt.in, tt.max); got != tt.want {
			t.Errorf("clean(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestErrorText(t *testing.T) {
	if got := (Request{Error: "Wrong PIN\n(2 tries left)"}).ErrorText(); got != "Wrong PIN (2 tries left)" {
		t.Errorf("ErrorText = %q", got)
	}
	if got := (Request{}).ErrorText(); got != "" {
		t.Errorf("ErrorText of none = %q", got)
	}
}
