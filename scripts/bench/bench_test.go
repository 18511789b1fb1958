//go:build linux

package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"slices"
	"strings"
	"testing"
)

func TestMakeBody(t *testing.T) {
	for _, n := range []int64{200, 4096 - 300, 1 << 20} {
		b := makeBody(n, uint64(n))
		if int64(len(b)) != n {
			t.Fatalf("makeBody(%d): %d bytes", n, len(b))
		}
		if !bytes.Equal(b, makeBody(n, uint64(n))) {
			t.Fatalf("makeBody(%d) is not deterministic", n)
		}
		for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\r\n")), []byte("\r\n")) {
			if len(line) > 84 || bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("makeBody(%d): line %d is %q", n, i, line)
			}
		}
	}
}

func TestExtractSigned(t *testing.T) {
	content := "Content-Type: text/plain\r\n\r\nhello\r\n"
	sig := []byte{0x30, 0x03, 0x02, 0x01, 0x05}
	msg := "From: a@example\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n" +
		"\tmicalg=sha-256; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n" + content +
		"\r\n--b1\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(sig) + "\r\n--b1--\r\n"
	gotContent, gotSig, err := extractSigned([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if string(gotContent) != content || !bytes.Equal(gotSig, sig) {
		t.Fatalf("got content %q sig %x", gotContent, gotSig)
	}
}

func TestSameBody(t *testing.T) {
	want := []byte(strings.Repeat("a line of text that is long enough to fold when encoded =\r\n", 3))
	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	w.Write(want)
	w.Close()
	got := append([]byte("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"), qp.Bytes()...)
	if cte, err := sameBody(got, want); err != nil || cte != "quoted-printable" {
		t.Fatalf("quoted-printable entity: %q, %v", cte, err)
	}
	plain := append([]byte("Content-Type: text/plain\r\n\r\n"), want...)
	if _, err := sameBody(plain, want); err != nil {
		t.Fatal(err)
	}
	if _, err := sameBody(append(plain, 'x'), want); err == nil {
		t.Fatal("a changed body passed")
	}
}

func TestCheckAlgorithms(t *testing.T) {
	cbc := append([]byte{0x30, 0x80}, oidDER(2, 16, 840, 1, 101, 3, 4, 1, 42)...)
	op := operation{Cipher: "AES-256-CBC", Key: "rsa"}
	if err := checkAlgorithms(op, op.Cipher, cbc); err != nil {
		t.Fatal(err)
	}
	if err := checkAlgorithms(op, "AES-256-GCM", cbc); err == nil {
		t.Fatal("AES-256-CBC passed as AES-256-GCM")
	}
	sig := operation{Sig: true}
	if err := checkAlgorithms(sig, "", append(append([]byte{}, oidSHA256...), oidRSAPSS...)); err == nil {
		t.Fatal("a PSS signature passed")
	}
}

func TestParseBenchOutput(t *testing.T) {
	out := []byte("goos: linux\n" +
		"BenchmarkRoundTrip/dbus-fd/verify-4KiB-2         \t     200\t   1234567 ns/op\t      1070 p50-µs\t      5200 p99-µs\n" +
		"BenchmarkRoundTrip/engine/verify-4KiB-2          \t     200\t    340000 ns/op\t       330 p50-µs\t       900 p99-µs\n" +
		"BenchmarkIdleRSS-2 \t 1 \t 0 ns/op \t 9.7 idle-RSS-MiB\n" +
		"PASS\n")
	paired := func(fd, daemon, engine float64) string {
		return fmt.Sprintf("BenchmarkRoundTrip/paired/verify-4KiB-2 \t 200 \t 1145761 ns/op \t %g daemon-p50-µs \t %g dbus-fd-p50-µs \t %g engine-p50-µs \t %g overhead-p50-µs\n",
			daemon, fd, engine, fd-engine)
	}
	rows := parseBenchOutput(out)
	if len(rows) != 3 || rows[0].Name != "RoundTrip/dbus-fd/verify-4KiB" || rows[0].Metrics["p50-µs"] != 1070 {
		t.Fatalf("rows = %+v", rows)
	}
	tests := []struct {
		name string
		out  string
		want []string
	}{
		{"no paired row", "", []string{"paired row is missing", "separate rows, run one after another: 740 µs", "9.7 MiB", "target < 20 MiB: met"}},
		{"paired, met", paired(610, 255, 200), []string{"paired samples): 410 µs — target < 0.5 ms: met", "takes 55 µs", "transport alone adds 355 µs", "740 µs"}},
		{"paired, not met", paired(900, 300, 200), []string{"700 µs — target < 0.5 ms: **NOT MET**"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := daemonTargets(append(slices.Clone(rows), parseBenchOutput([]byte(tt.out))...))
			for _, want := range tt.want {
				if !strings.Contains(got, want) {
					t.Errorf("targets %q lack %q", got, want)
				}
			}
		})
	}
}
