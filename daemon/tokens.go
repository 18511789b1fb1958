package daemon

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/keystore"
	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/smime/cms"
	"github.com/smimed/smimed/tokens"
)

// tokenSource prefixes the Source (keystore.Identity.Backend) of an
// identity whose key is on a PKCS#11 token: "token:<label>".
const tokenSource = "token:"

// openTokens opens the token manager the configuration asks for, or returns
// nil when tokens.enabled is false. base carries the test overrides
// (Options.Tokens); the prompter, the modules, the PIN cache and the logger
// come from the daemon.
func openTokens(cfg *config.Config, base tokens.Options, p prompt.Prompter, logger *slog.Logger) (*tokens.Manager, error) {
	if !cfg.Tokens.Enabled {
		logger.Info("tokens: disabled by configuration (tokens.enabled)")
		return nil, nil
	}
	o := base
	o.Prompter = p
	o.Modules = append(append([]string(nil), o.Modules...), cfg.Tokens.Modules...)
	o.CachePIN = cfg.Tokens.CachePIN
	o.Logger = logger
	return tokens.Open(o)
}

// watchTokens turns the manager's insertions and removals into
// IdentitiesChanged signals until ctx ends.
func (s *Service) watchTokens(ctx context.Context) {
	defer close(s.watchDone)
	for ev := range s.tokens.Watch(ctx) {
		switch ev.Kind {
		case tokens.TokenInserted, tokens.TokenRemoved:
			s.logger.Info("tokens: token "+string(ev.Kind), "token", ev.Token.Label, "module", ev.Module)
			s.identitiesChanged()
		case tokens.ModuleFailed:
			s.logger.Warn("tokens: module failed", "module", ev.Module, "err", ev.Err)
		}
	}
}

// isToken reports whether the identity's key is on a token.
func isToken(id keystore.Identity) bool { return strings.HasPrefix(id.Backend, tokenSource) }

// fromToken describes a token identity the way the rest of the daemon
// handles identities.
func fromToken(t tokens.Identity) keystore.Identity {
	return keystore.Identity{ID: t.ID, Label: t.Label, Certificate: t.Certificate, Chain: t.Chain,
		Backend: tokenSource + t.Token.Label}
}

// tokenIdentities lists the identities on the tokens present and remembers
// them for signer and decrypter. Modules that fail are logged; their tokens
// are simply not listed.
func (s *Service) tokenIdentities(ctx context.Context) []tokens.Identity {
	if s.tokens == nil {
		return nil
	}
	ids, err := s.tokens.Identities(ctx)
	if err != nil {
		s.logger.Warn("tokens: some modules failed", "err", err)
	}
	known := make(map[string]tokens.Identity, len(ids))
	for _, id := range ids {
		known[id.ID] = id
	}
	s.mu.Lock()
	s.tokIDs = known
	s.mu.Unlock()
	return ids
}

// tokenIdentity returns the token identity with the given ID: the one last
// listed, else a fresh lookup.
func (s *Service) tokenIdentity(ctx context.Context, id string) (tokens.Identity, error) {
	if s.tokens == nil {
		return tokens.Identity{}, tokens.ErrNotFound
	}
	s.mu.Lock()
	t, ok := s.tokIDs[id]
	s.mu.Unlock()
	if ok {
		return t, nil
	}
	return s.tokens.Identity(ctx, id)
}

// signer returns the key handle that signs for id, from the key store or
// the token. The prompt request names the token for token keys.
func (s *Service) signer(ctx context.Context, id keystore.Identity, req prompt.Request) (crypto.Signer, error) {
	if !isToken(id) {
		return s.store.Signer(ctx, id.ID, req)
	}
	t, err := s.tokenIdentity(ctx, id.ID)
	if err != nil {
		return nil, err
	}
	req.TokenLabel = t.Token.Label
	return s.tokens.Signer(ctx, t, req)
}

// decrypter returns the key handle that decrypts for id (for EC token keys
// it also implements cms.KeyAgreer).
func (s *Service) decrypter(ctx context.Context, id keystore.Identity, req prompt.Request) (crypto.Decrypter, error) {
	if !isToken(id) {
		return s.store.Decrypter(ctx, id.ID, req)
	}
	t, err := s.tokenIdentity(ctx, id.ID)
	if err != nil {
		return nil, err
	}
	req.TokenLabel = t.Token.Label
	return s.tokens.Decrypter(ctx, t, req)
}

// Tokens lists the PKCS#11 tokens present. Modules that fail are logged
// and left out; they do not hide the other modules' tokens.
func (s *Service) Tokens(ctx context.Context) ([]ipc.Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.fail(ctx, "tokens", err)
	}
	out := []ipc.Token{}
	if s.tokens == nil {
		return out, nil
	}
	toks, err := s.tokens.Tokens(ctx)
	if err != nil {
		if errors.Is(err, tokens.ErrClosed) || ctx.Err() != nil {
			return nil, s.fail(ctx, "tokens", err)
		}
		s.logger.Warn("tokens: some modules failed", "err", err)
	}
	for _, t := range toks {
		out = append(out, ipc.Token{
			Label:        t.Label,
			Manufacturer: t.Manufacturer,
			Serial:       t.Serial,
			Module:       t.Module,
			PINState:     string(t.PINState),
			PINPad:       t.PINPad,
		})
	}
	return out, nil
}

// oidRSAESOAEP is id-RSAES-OAEP (RFC 4055).
var oidRSAESOAEP = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}

// capabilities are what the user's identity id can decrypt, to advertise
// in its signatures and to encrypt its own copies with: for keys on a
// token, smimed's defaults without RSAES-OAEP, since SoftHSM and many cards
// implement OAEP with SHA-1 only and refuse the SHA-256 OAEP smimed would
// use (tokens/README.md); PKCS #1 v1.5 key transport works on every card.
func capabilities(id keystore.Identity) []cms.Capability {
	caps := cms.DefaultCapabilities()
	if !isToken(id) {
		return caps
	}
	return slices.DeleteFunc(caps, func(c cms.Capability) bool { return c.Algorithm.Equal(oidRSAESOAEP) })
}

// ownCapabilities returns capabilities for the user's identity whose
// certificate is c.
func ownCapabilities(ids []keystore.Identity, c *x509.Certificate) []cms.Capability {
	for _, id := range ids {
		if id.Certificate.Equal(c) {
			return capabilities(id)
		}
	}
	return cms.DefaultCapabilities()
}

// tokenError maps the token manager's errors; ok is false for other errors.
func tokenError(err error) (name ipc.ErrorName, msg string, ok bool) {
	switch {
	case errors.Is(err, tokens.ErrPinIncorrect):
		return ipc.PinIncorrect, plain(err) + "; it is not retried: try the operation again", true
	case errors.Is(err, tokens.ErrPinLocked):
		return ipc.PinLocked, plain(err), true
	case errors.Is(err, tokens.ErrTokenRemoved):
		return ipc.TokenRemoved, plain(err) + "; insert it again and retry", true
	case errors.Is(err, tokens.ErrUnsupported):
		return ipc.Unsupported, plain(err), true
	case errors.Is(err, tokens.ErrNotFound):
		return ipc.NoIdentity, plain(err), true
	case errors.Is(err, tokens.ErrModuleFailed), errors.Is(err, tokens.ErrModuleNotFound):
		// Internal, not TokenRemoved: the card is still there; the
		// module (driver) hung, crashed or cannot be loaded, and the
		// next request starts it again.
		return ipc.Internal, "the smart card's PKCS#11 module failed: " + plain(err), true
	case errors.Is(err, tokens.ErrTokenFailed):
		return ipc.Internal, "the smart card reported an error: " + plain(err), true
	}
	return "", "", false
}
