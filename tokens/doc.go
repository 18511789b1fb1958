// Package tokens gives smimed its identities on PKCS#11 smart cards and USB
// tokens: it finds the modules the desktop configured (p11-kit, see
// package p11kit) plus those in smimed's configuration, lists the tokens
// present and the identities on them (a certificate and a private key with
// the same CKA_ID), watches for tokens being inserted and removed, and
// signs, decrypts and performs ECDH with a PIN for every use.
//
// Every PKCS#11 call happens in a worker process, one per module (the
// daemon's own executable started with WorkerArg, see WorkerMain). A
// module that hangs or crashes costs the call in flight an
// ErrModuleFailed; its worker is killed and started again on the next use,
// while other modules and the daemon carry on. The PIN crosses the pipe to
// the worker for the one call that needs it and is zeroed on both sides.
//
//	m, err := tokens.Open(tokens.Options{Prompter: p, Modules: cfg.Modules})
//	defer m.Close()
//	toks, err := m.Tokens(ctx)                 // []Token, err joins *ModuleError
//	ids, err := m.Identities(ctx)              // []Identity
//	s, err := m.Signer(ctx, ids[0], prompt.Request{Subject: subj, Counterpart: to})
//	sig, err := s.Sign(nil, digest, crypto.SHA256)   // one PIN prompt
//	d, err := m.Decrypter(ctx, ids[0], prompt.Request{...})
//	ka := d.(interface{ ECDH(*ecdh.PublicKey) ([]byte, error) }) // EC keys
//	for ev := range m.Watch(ctx) { ... }       // TokenInserted, TokenRemoved
//
// Only daemon/ (and cmd/ wiring) depends on this package; it depends on
// prompt/ within the module.
package tokens
