package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc/credentials"
)

// TokenCredentials sends a bearer token with every call of a client
// connection (a worker's or scheduler's own dials). They are refused on a
// connection without TLS, where the token would travel in the clear.
type TokenCredentials struct{ token string }

// NewTokenCredentials returns credentials sending token; surrounding white
// space (a token file's newline) is dropped.
func NewTokenCredentials(token string) TokenCredentials {
	return TokenCredentials{token: strings.TrimSpace(token)}
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t TokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{authorizationHeader: "Bearer " + t.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (TokenCredentials) RequireTransportSecurity() bool { return true }

var _ credentials.PerRPCCredentials = TokenCredentials{}
