package auth

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/credentials"
)

// TokenCredentials sends a bearer token with every call of a client
// connection (a worker's or scheduler's own dials). They are refused on a
// connection without TLS, where the token would travel in the clear,
// unless made by NewLoopbackTokenCredentials.
type TokenCredentials struct {
	token string
	// clearToLoopback: the token may go without TLS, to a loopback
	// address only, which a farm of one machine listens on (`paddock up
	// --auth` takes tokens there without TLS).
	clearToLoopback bool
	what            string // names the token's source in errors
}

// NewTokenCredentials returns credentials sending token; surrounding white
// space (a token file's newline) is dropped.
func NewTokenCredentials(token string) TokenCredentials {
	return TokenCredentials{token: strings.TrimSpace(token)}
}

// NewLoopbackTokenCredentials returns credentials for a connection without
// TLS: they send token only on calls to a loopback address (or a UNIX
// socket), and fail other calls with an error naming what, the token's
// source, instead of sending it in the clear.
func NewLoopbackTokenCredentials(token, what string) TokenCredentials {
	return TokenCredentials{token: strings.TrimSpace(token), clearToLoopback: true, what: what}
}

// GetRequestMetadata implements credentials.PerRPCCredentials. uri is the
// call's audience, "https://AUTHORITY/SERVICE", whose authority is the
// dialed host ("localhost" for a UNIX socket).
func (t TokenCredentials) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	if t.clearToLoopback && !securedCall(ctx) {
		host := ""
		if len(uri) > 0 {
			if u, err := url.Parse(uri[0]); err == nil {
				host = u.Hostname()
			}
		}
		if !isLoopbackHost(host) {
			return nil, fmt.Errorf("%s: a token is sent without TLS only to a loopback address, and %q is not one; dial it with TLS", t.what, host)
		}
	}
	return map[string]string{authorizationHeader: "Bearer " + t.token}, nil
}

// securedCall reports whether the call's connection has TLS.
func securedCall(ctx context.Context) bool {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	return ok && credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity) == nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (t TokenCredentials) RequireTransportSecurity() bool { return !t.clearToLoopback }

var _ credentials.PerRPCCredentials = TokenCredentials{}
