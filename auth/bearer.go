package auth

import (
	"errors"
	"strings"
)

// maxTokenBytes bounds a bearer token; JWTs with large claims stay well
// under it.
const maxTokenBytes = 8 << 10

// parseBearer returns the token of an "authorization" header value of the
// form "Bearer TOKEN" (RFC 6750; the scheme is case-insensitive). The error
// never contains the header, which may hold a secret.
func parseBearer(header string) (string, error) {
	if len(header) > maxTokenBytes {
		return "", errors.New("authorization header too long")
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", errors.New(`authorization header is not "Bearer TOKEN"`)
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", errors.New("authorization header has an empty token")
	}
	for i := 0; i < len(token); i++ {
		// RFC 6750 b64token characters, plus '.' of JWTs.
		c := token[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
			return "", errors.New("authorization token has a character outside the bearer token alphabet")
		}
	}
	return token, nil
}

// looksLikeJWT: three base64url parts separated by dots.
func looksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2
}
