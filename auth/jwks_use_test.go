package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A JWKS key for encryption ("use": "enc") verifies no token, a key that
// names its "alg" verifies only tokens of that algorithm, and a token
// with critical header extensions ("crit") is refused (RFC 7515 4.1.11):
// an outside probe had all three accepted.
func TestJWKSKeyUseAlgAndCrit(t *testing.T) {
	dir := t.TempDir()
	okp := func(kid, use, alg string) (map[string]string, ed25519.PrivateKey) {
		_, priv, _ := ed25519.GenerateKey(nil)
		k := map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid,
			"x": base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))}
		if use != "" {
			k["use"] = use
		}
		if alg != "" {
			k["alg"] = alg
		}
		return k, priv
	}
	sig, sigKey := okp("sig", "sig", "EdDSA")
	enc, encKey := okp("enc", "enc", "")
	wrongAlg, wrongAlgKey := okp("rsa-only", "", "RS256")
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{sig, enc, wrongAlg}})
	if err := os.WriteFile(filepath.Join(dir, "keys.jwks"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := compilePolicy([]byte(`jwt:
  jwks: keys.jwks
  audience: paddock
tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {jwt_subject: bot, permissions: [cas-read]}
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"sub": "bot", "aud": "paddock", "exp": time.Now().Add(time.Hour).Unix()}
	if _, err := p.Authenticate(withHeader("Bearer " + sign(t, sigKey, "sig", claims))); err != nil {
		t.Fatalf("a token of the signing key: %v", err)
	}
	critical := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	critical.Header["kid"], critical.Header["crit"] = "sig", []string{"x-unknown"}
	crit, err := critical.SignedString(sigKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"a key for encryption":           sign(t, encKey, "enc", claims),
		"a key naming another algorithm": sign(t, wrongAlgKey, "rsa-only", claims),
		"critical header extensions":     crit,
	} {
		_, err := p.Authenticate(withHeader("Bearer " + tok))
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want UNAUTHENTICATED", name, err)
		}
	}

	// A set whose every key is for encryption, or names an algorithm not
	// accepted here, is refused at load.
	for name, set := range map[string][]map[string]string{
		"only encryption keys": {enc},
		"an HMAC algorithm":    {func() map[string]string { k, _ := okp("h", "", "HS256"); return k }()},
	} {
		b, _ := json.Marshal(map[string]any{"keys": set})
		if _, err := parseJWKS(b); err == nil {
			t.Errorf("%s: loaded, want a refusal", name)
		} else if !strings.Contains(err.Error(), "sig") && !strings.Contains(err.Error(), "HS256") {
			t.Errorf("%s: %v does not say why", name, err)
		}
	}
}
