package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// authorizationHeader is the gRPC metadata key of bearer tokens; Bazel sets
// it with --remote_header=authorization=Bearer….
const authorizationHeader = "authorization"

// Authenticate finds the caller of ctx: a bearer token if one was sent
// (a token that is sent must be good, even if a certificate would be),
// else a verified client certificate. UNAUTHENTICATED otherwise. A
// scheduler's call made for a tenant is that tenant's (actingFor).
func (p *Policy) Authenticate(ctx context.Context) (*Principal, error) {
	pr, err := p.credentialHolder(ctx)
	if err != nil {
		return nil, err
	}
	return p.actingFor(ctx, pr)
}

// credentialHolder is the identity of the credential ctx's call carries.
func (p *Policy) credentialHolder(ctx context.Context) (*Principal, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if vals := md.Get(authorizationHeader); len(vals) > 0 {
			// The same header twice (a client that adds it at two layers)
			// is one credential; two different ones are refused.
			for _, v := range vals[1:] {
				if v != vals[0] {
					return nil, status.Error(codes.Unauthenticated, "more than one authorization header")
				}
			}
			pr, _, err := p.authenticateToken(vals[0])
			return pr, err
		}
	}
	if chains := peerVerifiedChains(ctx); chains != nil {
		// The handshake verified the chain when the connection opened,
		// and a connection may stay open for days: each call checks
		// that it has not expired since.
		if err := unexpiredChain(chains, p.clock.Now()); err != nil {
			return nil, err
		}
		return p.certificateHolder(chains[0][0])
	}
	return nil, status.Error(codes.Unauthenticated, "no credentials: send a bearer token (authorization: Bearer TOKEN) or a client certificate issued by the farm's client CA (TLS clients send no certificate from another CA)")
}

// actingFor is who pr acts as in the call of ctx. A scheduler forwards
// the calls of the tenants' clients it authenticated to storage over its
// own connection, naming the tenant in OnBehalfOfHeader (ForwardTenant);
// as the scheduler itself, every tenant's call there was one caller's, so
// no tenant's share applied to it, and a tenant's Push was refused as a
// worker's. A scheduler's call that names a tenant is therefore made as
// that tenant with the scheduler's storage permissions, on the tenant's
// instance names only, Push included (the scheduler checked the client's
// own permission before forwarding). A tenant the policy does not know is
// PERMISSION_DENIED. From anyone else the header is ignored: it grants
// nothing to them, and a policy that still lists the scheduler under
// workers keeps working as before.
func (p *Policy) actingFor(ctx context.Context, pr *Principal) (*Principal, error) {
	if !pr.Scheduler {
		return pr, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(OnBehalfOfHeader)
	if len(vals) == 0 {
		return pr, nil
	}
	tenant := vals[0]
	scopes, ok := p.scopes[tenant]
	if !ok || slices.ContainsFunc(vals, func(v string) bool { return v != tenant }) {
		return nil, status.Errorf(codes.PermissionDenied, "%s names %q, which is not one tenant of this server's policy", OnBehalfOfHeader, vals)
	}
	return &Principal{Name: pr.Name + " for " + tenant, Tenant: tenant, scopes: scopes,
		perms: bit(CASRead) | bit(CASWrite) | bit(ACRead) | bit(ACWrite), policy: p}, nil
}

// AuthenticateBearer finds the caller of an HTTP request by its
// Authorization header value ("Bearer TOKEN"), as Authenticate does for a
// gRPC call: the status page's login and its API clients use the same
// tokens as gRPC. UNAUTHENTICATED (a gRPC status) if it names no one.
func (p *Policy) AuthenticateBearer(header string) (*Principal, error) {
	pr, _, err := p.authenticateToken(header)
	return pr, err
}

// AuthenticateBearerUntil is AuthenticateBearer that also says until when
// the credential is good: a JWT's expiry, or the zero time for a static
// token (good until the policy drops it). Whatever outlives the request,
// such as a status-page session, must end by then.
func (p *Policy) AuthenticateBearerUntil(header string) (*Principal, time.Time, error) {
	return p.authenticateToken(header)
}

// AuthenticateCertificate finds the holder of a client certificate that
// the TLS handshake verified (an HTTP request's TLS.VerifiedChains[0][0]).
// A certificate that has expired since (the handshake of a keep-alive
// connection may be long past) is UNAUTHENTICATED; only the certificate
// itself is checked, not the chain it was verified with.
func (p *Policy) AuthenticateCertificate(cert *x509.Certificate) (*Principal, error) {
	if err := unexpiredChain([][]*x509.Certificate{{cert}}, p.clock.Now()); err != nil {
		return nil, err
	}
	return p.certificateHolder(cert)
}

// certificateHolder is the principal a verified, unexpired client
// certificate names.
func (p *Policy) certificateHolder(cert *x509.Certificate) (*Principal, error) {
	for _, id := range CertificateIdentities(cert) {
		if pr := p.certs[id]; pr != nil {
			return pr, nil
		}
	}
	return nil, status.Error(codes.Unauthenticated, "the client certificate is valid but names no identity of the policy")
}

// authenticateToken returns the principal of a bearer token and, for a
// JWT, its expiry (zero for a static token).
func (p *Policy) authenticateToken(header string) (*Principal, time.Time, error) {
	token, err := parseBearer(header)
	if err != nil {
		return nil, time.Time{}, status.Error(codes.Unauthenticated, err.Error())
	}
	// A static token first (a map lookup on the hash, not the token: the
	// timing it leaks is about a hash, which says nothing useful about
	// any token): its lookup is exact, and one that happens to
	// hold two dots (abc.def.ghi) was taken for a malformed JWT and could
	// never log in once the policy had a jwt section.
	if pr := p.tokens[sha256.Sum256([]byte(token))]; pr != nil {
		return pr, time.Time{}, nil
	}
	if p.jwt != nil && looksLikeJWT(token) {
		sub, exp, err := p.jwt.verify(token)
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenUnverifiable) {
			// Not the library's words, which named the key types this
			// server holds ("ECDSA verify expects *ecdsa.PublicKey").
			err = errors.New("its signature is not valid for any key of this server")
		}
		if err != nil {
			return nil, time.Time{}, status.Errorf(codes.Unauthenticated, "bearer token: %v", err)
		}
		if pr := p.jwtSubjects[sub]; pr != nil {
			return pr, exp, nil
		}
		return nil, time.Time{}, status.Errorf(codes.Unauthenticated, "bearer token: subject %q is not in the policy", sub)
	}
	return nil, time.Time{}, status.Error(codes.Unauthenticated, "bearer token is not valid")
}

// peerVerifiedChains are the chains the TLS handshake of ctx's
// connection verified the client's certificate with (each starts with
// that certificate); nil without a verified client certificate.
func peerVerifiedChains(ctx context.Context) [][]*x509.Certificate {
	pe, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := pe.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains
}

// unexpiredChain is nil if at least one of chains (verified chains, each
// starting with the client's certificate) has no certificate past its
// NotAfter at now, as the handshake required when it verified them; else
// UNAUTHENTICATED, naming the first certificate of chains[0] to expire.
// TLS verifies a client certificate only at the handshake, so without
// this a connection opened before its certificate expired stayed
// authenticated as long as the client kept it open. It only compares
// times and allocates nothing unless it refuses: it runs on every call.
// It does not re-verify against the client CA file as last read (a CA
// removed by a rotation): the TLS configuration that holds that pool
// (ServerTLS) is not linked to the policy.
func unexpiredChain(chains [][]*x509.Certificate, now time.Time) error {
	var first *x509.Certificate
	for _, chain := range chains {
		var expired *x509.Certificate
		for _, c := range chain {
			if now.After(c.NotAfter) && (expired == nil || c.NotAfter.Before(expired.NotAfter)) {
				expired = c
			}
		}
		if expired == nil {
			return nil
		}
		if first == nil {
			first = expired
		}
	}
	at := first.NotAfter.UTC().Format(time.RFC3339)
	if first == chains[0][0] {
		return status.Errorf(codes.Unauthenticated, "the client certificate expired at %s: reconnect with a renewed certificate", at)
	}
	return status.Errorf(codes.Unauthenticated, "the client certificate's issuer %q expired at %s: reconnect with a renewed certificate from a current CA", first.Subject.String(), at)
}

// CertificateIdentities are the names a client certificate may be known
// by in a policy: its SPIFFE IDs (URI SANs with the spiffe scheme) first,
// then its subject.
func CertificateIdentities(c *x509.Certificate) []string {
	var ids []string
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			ids = append(ids, u.String())
		}
	}
	return append(ids, c.Subject.String())
}
