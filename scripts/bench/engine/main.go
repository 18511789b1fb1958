// Command engine runs one operation of smimed's S/MIME engine (package
// smime) on files, so that scripts/bench can time it as a process next to
// openssl, cmsutil and gpgsm. Not part of the product.
//
//	engine sign    -cert C.pem -key K.pem -in MSG -out OUT
//	engine verify  -roots ROOT.pem -in MSG -out OUT
//	engine encrypt -to C.pem -cipher aes256-cbc|aes256-gcm -in MSG -out OUT
//	engine decrypt -cert C.pem -key K.pem -in MSG -out OUT
//
// Exit status 0: done (verify: signature good; decrypt: decrypted). 1: the
// engine ran but the outcome was not good (the status goes to stderr). 2:
// usage or file errors.
package main

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/smimed/smimed/smime"
	"github.com/smimed/smimed/smime/cms"
)

const bufSize = 64 << 10

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	op := os.Args[1]
	fs := flag.NewFlagSet(op, flag.ExitOnError)
	certPath := fs.String("cert", "", "own certificate (PEM)")
	keyPath := fs.String("key", "", "own private key (PKCS#8 PEM)")
	rootsPath := fs.String("roots", "", "trust anchors (PEM)")
	toPath := fs.String("to", "", "recipient certificate (PEM)")
	cipher := fs.String("cipher", "aes256-cbc", "content cipher: aes256-cbc or aes256-gcm")
	inPath := fs.String("in", "", "input message")
	outPath := fs.String("out", "", "output file")
	_ = fs.Parse(os.Args[2:])
	if *inPath == "" || *outPath == "" {
		usage()
	}

	in, err := os.Open(*inPath)
	check(err)
	defer in.Close()
	outFile, err := os.Create(*outPath)
	check(err)
	out := bufio.NewWriterSize(outFile, bufSize)
	src := bufio.NewReaderSize(in, bufSize)
	ctx := context.Background()

	switch op {
	case "sign":
		cert, key := loadCert(*certPath), loadKey(*keyPath)
		check(smime.Sign(ctx, out, src, smime.SignOptions{
			Signer: key, Certificate: cert, Hash: crypto.SHA256,
		}))
	case "encrypt":
		var c cms.ContentCipher
		switch *cipher {
		case "aes256-cbc":
			c = cms.AES256CBC
		case "aes256-gcm":
			c = cms.AES256GCM
		default:
			usage()
		}
		check(smime.Encrypt(ctx, out, src, smime.EncryptOptions{
			Recipients: []smime.Recipient{{Certificate: loadCert(*toPath)}},
			Cipher:     c,
		}))
	case "verify":
		st, err := smime.Verify(ctx, out, src, smime.OpenOptions{Roots: loadPool(*rootsPath)})
		outcome(st, err, st != nil && st.Signature == "good")
	case "decrypt":
		cert, key := loadCert(*certPath), loadKey(*keyPath)
		var priv crypto.PrivateKey = key
		if ec, ok := key.(*ecdsa.PrivateKey); ok {
			k, err := ec.ECDH()
			check(err)
			priv = k
		}
		st, err := smime.Open(ctx, out, src, smime.OpenOptions{
			Roots: loadPool(*certPath),
			FindKey: func(_ context.Context, ris []cms.RecipientInfo) (*smime.DecryptionKey, error) {
				for _, ri := range ris {
					if ri.Matches(cert) {
						return &smime.DecryptionKey{Certificate: cert, PrivateKey: priv}, nil
					}
				}
				return nil, smime.ErrNoKey
			},
		})
		outcome(st, err, st != nil && st.Decryption == "ok")
	default:
		usage()
	}
	check(out.Flush())
	check(outFile.Close())
}

// outcome exits 1 with the status on stderr unless the operation was good.
func outcome(st *smime.Status, err error, good bool) {
	if err == nil && good {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "engine: %v\n", err)
	} else {
		fmt.Fprintf(os.Stderr, "engine: signature=%s decryption=%s\n", st.Signature, st.Decryption)
	}
	if st != nil {
		j, _ := json.Marshal(st)
		fmt.Fprintf(os.Stderr, "%s\n", j)
	}
	os.Exit(1)
}

func loadPEM(path, typ string) []*pem.Block {
	data, err := os.ReadFile(path)
	check(err)
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == typ {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) == 0 {
		check(fmt.Errorf("%s: no %s", path, typ))
	}
	return blocks
}

func loadCert(path string) *x509.Certificate {
	c, err := x509.ParseCertificate(loadPEM(path, "CERTIFICATE")[0].Bytes)
	check(err)
	return c
}

func loadPool(path string) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, b := range loadPEM(path, "CERTIFICATE") {
		c, err := x509.ParseCertificate(b.Bytes)
		check(err)
		pool.AddCert(c)
	}
	return pool
}

func loadKey(path string) crypto.Signer {
	k, err := x509.ParsePKCS8PrivateKey(loadPEM(path, "PRIVATE KEY")[0].Bytes)
	check(err)
	s, ok := k.(crypto.Signer)
	if !ok {
		check(errors.New("key is not a crypto.Signer"))
	}
	return s
}

func check(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "engine: %v\n", err)
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: engine sign|verify|encrypt|decrypt [flags] -in MSG -out OUT")
	io.WriteString(os.Stderr, "see scripts/bench/engine/main.go\n")
	os.Exit(2)
}
