// Package smime is the MIME layer of S/MIME 4.0 (RFC 8551): it signs,
// encrypts, verifies and decrypts whole mail messages, streaming, on top of
// the CMS structures of package smime/cms.
//
// Writing: Sign (multipart/signed, or opaque application/pkcs7-mime
// signed-data), Encrypt (enveloped-data with AES-CBC, authEnveloped-data
// with AES-GCM), SignAndEncrypt, EncryptAndSign and CertsOnly. The message's
// own header fields (From, To, Subject, ...) stay outside the protected
// entity; its Content-* fields and body go inside, canonicalised to CRLF
// and given 7-bit transfer encodings.
//
// Reading: Open peels every S/MIME layer from the outside in and writes the
// innermost protected entity to its destination, reporting each layer and
// each signer's outcome (good, bad, untrusted, expired, weak-algorithm,
// email-mismatch) in a Status. Verify is Open without decryption.
//
// The package is pure: bytes in, bytes out, plus the crypto.Signer,
// crypto.Decrypter or ECDH key handles it is given. It knows nothing of key
// storage, prompts or D-Bus. Memory use does not depend on the message's
// size. See README.md for the decisions behind the formats and algorithm
// choices, and for the EFAIL rule callers must follow.
package smime
