package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.yaml.in/yaml/v3"
)

// jwtMethods are the signature algorithms accepted. Only public-key ones:
// a shared HMAC secret in the farm's config would let anyone who reads it
// mint tokens, and "none" is never accepted.
var jwtMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// jwtVerifier checks JWTs against the configured keys. Read-only after
// newJWTVerifier.
type jwtVerifier struct {
	keys   []crypto.PublicKey // from PEM files, tried in turn
	byKID  map[string]jwkKey  // from the JWKS file
	parser *jwt.Parser
}

// jwkKey is a JWKS key and the one algorithm it allows, if it names one.
type jwkKey struct {
	pub crypto.PublicKey
	alg string
}

func newJWTVerifier(cfg JWTConfig, dir string, root *yaml.Node) (*jwtVerifier, error) {
	v := &jwtVerifier{byKID: map[string]jwkKey{}}
	// Required: a signer (a CI system's OIDC issuer, a company's identity
	// provider) issues tokens for many services, and without an audience
	// to match, every token it ever signed, for any of them, was accepted
	// here; a service that leaked or logged one gave away a farm tenant.
	if cfg.Audience == "" {
		return nil, fmt.Errorf("line %d: jwt: audience is required: without it every token the keys sign is accepted, those issued for other services too; set the audience your issuer puts in tokens meant for Paddock", lineOf(root, "jwt"))
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(jwtMethods), jwt.WithExpirationRequired()}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	opts = append(opts, jwt.WithAudience(cfg.Audience))
	v.parser = jwt.NewParser(opts...)
	for i, f := range cfg.Keys {
		k, err := readPEMPublicKey(resolve(dir, f))
		if err != nil {
			return nil, fmt.Errorf("line %d: jwt key %s: %w", lineOf(root, "jwt", "keys", i), f, err)
		}
		v.keys = append(v.keys, k)
	}
	if cfg.JWKS != "" {
		b, err := os.ReadFile(resolve(dir, cfg.JWKS))
		if err == nil {
			v.byKID, err = parseJWKS(b)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: jwks %s: %w", lineOf(root, "jwt", "jwks"), cfg.JWKS, err)
		}
	}
	return v, nil
}

func resolve(dir, f string) string {
	if filepath.IsAbs(f) {
		return f
	}
	return filepath.Join(dir, f)
}

// verify checks the token's signature, expiry, issuer and audience, and
// returns its subject and when it expires.
func (v *jwtVerifier) verify(token string) (string, time.Time, error) {
	t, err := v.parser.Parse(token, v.keyFor)
	if err != nil {
		return "", time.Time{}, err
	}
	sub, err := t.Claims.GetSubject()
	if err != nil || sub == "" {
		return "", time.Time{}, errors.New("token has no subject")
	}
	exp, err := t.Claims.GetExpirationTime()
	if err != nil || exp == nil { // the parser requires it; kept for safety
		return "", time.Time{}, errors.New("token has no expiry")
	}
	return sub, exp.Time, nil
}

// keyFor picks the JWKS key named by the token's kid, or else tries every
// PEM key. A token with critical header extensions ("crit") is refused:
// this server understands none, and RFC 7515 (4.1.11) says such a token
// must be rejected, as a signer that marks one critical means the token
// is not to be trusted by a verifier that ignores it. A JWKS key that
// names its algorithm verifies only tokens of that algorithm.
func (v *jwtVerifier) keyFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errors.New("the token has critical header extensions (crit), which this server does not understand")
	}
	if kid, ok := t.Header["kid"].(string); ok && kid != "" {
		if k, ok := v.byKID[kid]; ok {
			if k.alg != "" && k.alg != t.Method.Alg() {
				return nil, errors.New("the token's algorithm is not the one its key (kid) names")
			}
			return k.pub, nil
		}
	}
	if len(v.keys) == 0 {
		return nil, errors.New("no key matches the token's kid")
	}
	set := jwt.VerificationKeySet{}
	for _, k := range v.keys {
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

// readPEMPublicKey reads a PUBLIC KEY or CERTIFICATE block.
func readPEMPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("PEM block %q is neither PUBLIC KEY nor CERTIFICATE", block.Type)
}

// jwk is the part of a JSON Web Key (RFC 7517/7518/8037) we use.
type jwk struct {
	Kty, Kid, Crv, N, E, X, Y, Use, Alg string
}

// parseJWKS reads a JSON Web Key Set; every key needs a kid. Keys for
// encryption ("use": "enc") are left out: an identity provider's set may
// hold them beside its signing keys, and a key is meant for one use
// (RFC 7517 4.2). A key's "alg", if given, must be one accepted here.
func parseJWKS(b []byte) (map[string]jwkKey, error) {
	var set struct{ Keys []jwk }
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, err
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	out := map[string]jwkKey{}
	for i, k := range set.Keys {
		if k.Kid == "" {
			return nil, fmt.Errorf("key %d has no kid", i)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Alg != "" && !slices.Contains(jwtMethods, k.Alg) {
			return nil, fmt.Errorf("key %q: alg %q is not one of %v", k.Kid, k.Alg, jwtMethods)
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.Kid, err)
		}
		out[k.Kid] = jwkKey{pub: pub, alg: k.Alg}
	}
	if len(out) == 0 {
		return nil, errors.New("no signature keys (every key is for another use than \"sig\")")
	}
	return out, nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	b64 := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err := errors.Join(err1, err2); err != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA n or e")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
		c := curves[k.Crv]
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if c == nil || errors.Join(err1, err2) != nil {
			return nil, fmt.Errorf("bad EC key (crv %q)", k.Crv)
		}
		pub := &ecdsa.PublicKey{Curve: c, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if !c.IsOnCurve(pub.X, pub.Y) {
			return nil, errors.New("EC point is not on the curve")
		}
		return pub, nil
	case "OKP":
		x, err := b64(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("bad OKP key (crv %q)", k.Crv)
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported kty %q", k.Kty)
}
