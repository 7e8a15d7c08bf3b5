package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func withHeader(v string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", v))
}

// jwtPolicy accepts JWTs signed by a PEM key (subject "ci") or by the
// JWKS key "k1" (subject "bot"), issued by "issuer" for "paddock".
func jwtPolicy(t *testing.T) (*Policy, ed25519.PrivateKey, ed25519.PrivateKey) {
	t.Helper()
	dir := t.TempDir()
	pemKey := writeEd25519Key(t, filepath.Join(dir, "key.pem"))
	_, jwksKey, _ := ed25519.GenerateKey(nil)
	set := map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "kid": "k1",
		"x": base64.RawURLEncoding.EncodeToString(jwksKey.Public().(ed25519.PublicKey)),
	}}}
	b, _ := json.Marshal(set)
	if err := os.WriteFile(filepath.Join(dir, "keys.jwks"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := compilePolicy([]byte(`jwt:
  keys: [key.pem]
  jwks: keys.jwks
  issuer: issuer
  audience: paddock
tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {jwt_subject: ci, permissions: [cas-read]}
      - {jwt_subject: bot, permissions: [cas-read, execute]}
      # the SHA-256 of abc.def.ghi, a static token shaped like a JWT
      - {name: dotted, token_sha256: 6559e90b5dd57405bdf180f29b509053a3d36c4abf3de535ab249b54d4327234, permissions: [cas-read]}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	return p, pemKey, jwksKey
}

func sign(t *testing.T, key ed25519.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWTs: tokens signed by a configured key (PEM, or JWKS by kid) with
// the right issuer, audience and a future expiry identify their subject;
// anything else is UNAUTHENTICATED.
func TestJWTs(t *testing.T) {
	p, pemKey, jwksKey := jwtPolicy(t)
	_, stranger, _ := ed25519.GenerateKey(nil)
	exp := time.Now().Add(time.Hour).Unix()
	claims := func(sub string, mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": sub, "iss": "issuer", "aud": "paddock", "exp": exp}
		if mod != nil {
			mod(c)
		}
		return c
	}
	good := []struct {
		token, tenant string
		exec          bool
	}{
		{sign(t, pemKey, "", claims("ci", nil)), "a", false},
		{sign(t, jwksKey, "k1", claims("bot", nil)), "a", true},
	}
	for i, g := range good {
		pr, err := p.Authenticate(withHeader("Bearer " + g.token))
		if err != nil || pr.Tenant != g.tenant || pr.Holds(Execute) != g.exec {
			t.Errorf("good token %d: %+v, %v", i, pr, err)
		}
	}
	bad := map[string]string{
		"unknown signer":   sign(t, stranger, "", claims("ci", nil)),
		"unknown kid":      sign(t, stranger, "k9", claims("ci", nil)),
		"expired":          sign(t, pemKey, "", claims("ci", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })),
		"no expiry":        sign(t, pemKey, "", claims("ci", func(c jwt.MapClaims) { delete(c, "exp") })),
		"wrong issuer":     sign(t, pemKey, "", claims("ci", func(c jwt.MapClaims) { c["iss"] = "other" })),
		"wrong audience":   sign(t, pemKey, "", claims("ci", func(c jwt.MapClaims) { c["aud"] = "other" })),
		"unknown subject":  sign(t, pemKey, "", claims("mallory", nil)),
		"alg none":         unsignedJWT(claims("ci", nil)),
		"tampered payload": tamper(sign(t, pemKey, "", claims("ci", nil))),
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherType, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims("ci", nil)).SignedString(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	bad["another key type"] = otherType
	for name, tok := range bad {
		_, err := p.Authenticate(withHeader("Bearer " + tok))
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want UNAUTHENTICATED", name, err)
		}
		// The refusal names no key type this server holds.
		if msg := strings.ToLower(status.Convert(err).Message()); strings.Contains(msg, "ecdsa") || strings.Contains(msg, "ed25519") || strings.Contains(msg, "key is of invalid type") {
			t.Errorf("%s: %q names the server's key types", name, msg)
		}
	}
}

// TestBearerUntil: a JWT is good until its exp, which AuthenticateBearerUntil
// reports so that a status-page session can end with it; a static token
// has no expiry of its own (the zero time).
func TestBearerUntil(t *testing.T) {
	p, pemKey, _ := jwtPolicy(t)
	exp := time.Now().Add(5 * time.Minute).Truncate(time.Second)
	tok := sign(t, pemKey, "", jwt.MapClaims{"sub": "ci", "iss": "issuer", "aud": "paddock", "exp": exp.Unix()})
	pr, until, err := p.AuthenticateBearerUntil("Bearer " + tok)
	if err != nil || pr.Tenant != "a" || !until.Equal(exp) {
		t.Fatalf("JWT: %+v until %v, %v; want tenant a until %v", pr, until, err, exp)
	}
	pr, until, err = staticTokenPolicy(t).AuthenticateBearerUntil("Bearer test")
	if err != nil || pr == nil || !until.IsZero() {
		t.Fatalf("static token: %+v until %v, %v; want no expiry", pr, until, err)
	}
}

// TestStaticTokenShapedLikeAJWT: a static token with two dots is looked
// up as a static token, also when the policy verifies JWTs; it used to be
// taken for a malformed JWT and never log in. A JWT-shaped token that is
// neither is still refused.
func TestStaticTokenShapedLikeAJWT(t *testing.T) {
	p, _, _ := jwtPolicy(t)
	pr, until, err := p.AuthenticateBearerUntil("Bearer abc.def.ghi")
	if err != nil || pr == nil || pr.Name != "a/dotted" || !until.IsZero() {
		t.Fatalf("static token abc.def.ghi: %+v until %v, %v; want identity a/dotted", pr, until, err)
	}
	if _, _, err := p.AuthenticateBearerUntil("Bearer abc.def.ghj"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("another dotted token: %v, want UNAUTHENTICATED", err)
	}
}

func unsignedJWT(c jwt.MapClaims) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	return s
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"ci"`, `"bot"`, 1)))
	return strings.Join(parts, ".")
}

// TestBearerHeader: the accepted and refused shapes of the header.
func TestBearerHeader(t *testing.T) {
	for _, c := range []struct {
		header, token string
	}{
		{"Bearer abc", "abc"}, {"bearer abc", "abc"}, {"BEARER a.b.c", "a.b.c"}, {"Bearer  x-y_z~+/=", "x-y_z~+/="},
		{"Basic abc", ""}, {"Bearer", ""}, {"Bearer ", ""}, {"abc", ""}, {"Bearer a b", ""}, {"Bearer a\x00", ""},
		{"Bearer " + strings.Repeat("a", maxTokenBytes), ""},
	} {
		got, err := parseBearer(c.header)
		if got != c.token || (err == nil) != (c.token != "") {
			t.Errorf("parseBearer(%.40q) = %q, %v; want %q", c.header, got, err, c.token)
		}
	}
}

// FuzzAuthenticate: any header is an identity or UNAUTHENTICATED, never a
// crash, and the error never echoes the header (it may hold a secret).
func FuzzAuthenticate(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.e30.", "Basic x", "", "Bearer \x00", "Bearer a.b.c.d"} {
		f.Add(s)
	}
	dir := f.TempDir()
	writeEd25519Key(f, filepath.Join(dir, "key.pem"))
	p, err := compilePolicy([]byte(`jwt: {keys: [key.pem], audience: paddock}
tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {token_sha256: `+goodHash+`, permissions: [cas-read]}
      - {jwt_subject: ci, permissions: [cas-read]}
`), dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		pr, err := p.Authenticate(withHeader(header))
		if err != nil {
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("header %q: %v, want UNAUTHENTICATED", header, err)
			}
			if len(header) > 20 && strings.Contains(err.Error(), header[7:]) {
				t.Fatalf("the error %q echoes the header", err)
			}
			return
		}
		if pr.Tenant != "a" {
			t.Fatalf("header %q authenticated as %+v", header, pr)
		}
	})
}

// TestRepeatedHeaders: the same token twice is one credential; two
// different ones are refused, whichever would be valid.
func TestRepeatedHeaders(t *testing.T) {
	p := staticTokenPolicy(t)
	twice := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer test", "authorization", "Bearer test"))
	if _, err := p.Authenticate(twice); err != nil {
		t.Errorf("the same token twice: %v", err)
	}
	two := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer test", "authorization", "Bearer other"))
	if _, err := p.Authenticate(two); status.Code(err) != codes.Unauthenticated {
		t.Errorf("two different tokens: %v, want UNAUTHENTICATED", err)
	}
}

// staticTokenPolicy grants the static token "test" cas-read on tenant a.
func staticTokenPolicy(t *testing.T) *Policy {
	t.Helper()
	p, err := compilePolicy([]byte(`tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {token_sha256: `+goodHash+`, permissions: [cas-read]}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
