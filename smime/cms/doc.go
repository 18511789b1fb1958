// Package cms reads and writes the Cryptographic Message Syntax (RFC 5652)
// structures S/MIME 4.0 (RFC 8551) uses: SignedData for signed and
// certs-only messages, and EnvelopedData and AuthEnvelopedData for
// encrypted ones.
//
// Messages of any size pass through in constant memory: NewOpaqueSigner
// writes BER with indefinite lengths as content arrives, and
// NewSignedDataReader hashes the encapsulated content while the caller
// reads it. Detached signatures (multipart/signed) are made with
// DetachedSigner and read with ParseSignedData, the content's digests
// coming from a Digester.
//
// Signing supports RSA PKCS #1 v1.5 and RSASSA-PSS (RFC 4055) and ECDSA on
// P-256, P-384 and P-521, with SHA-256, SHA-384 or SHA-512 (RFC 5754). The
// private key is only ever reached through crypto.Signer, once per message,
// so it may live on a token. Verification also accepts SHA-1 and MD5 so
// that a caller can tell a weak signature (SignerInfo.Weakness) from a bad
// one.
//
// RFC 3161 time-stamp tokens ride in a SignerInfo as the unsigned attribute
// id-aa-signatureTimeStampToken: SignOptions.TimeStamp adds one,
// SignerInfo.TimeStampToken exposes it, and VerifyTimeStamp checks it over
// the signature value (imprint, the TSA's signature, id-kp-timeStamping, and
// the TSA's chain at the attested time) and returns that time.
//
// Apart from the TSA's chain in VerifyTimeStamp, the package does not build
// or check certificate chains, and knows nothing of MIME; those belong to
// its callers. Every error about a
// message wraps exactly one of the sentinel errors (ErrMalformed,
// ErrUnsupported, ErrDigestMismatch, ErrSignature, ...) with a reason.
package cms
