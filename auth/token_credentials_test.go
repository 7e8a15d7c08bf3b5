package auth

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials"
)

// Loopback token credentials send the token without TLS only on calls to
// a loopback address or a UNIX socket ("localhost"); a call to any other
// host fails, naming the token's flag, with nothing sent. With TLS the
// host does not matter. Plain token credentials require TLS of grpc.
func TestLoopbackTokenCredentials(t *testing.T) {
	c := NewLoopbackTokenCredentials("secret\n", "--token-file")
	if c.RequireTransportSecurity() || !NewTokenCredentials("x").RequireTransportSecurity() {
		t.Fatal("RequireTransportSecurity: loopback credentials must not, plain ones must")
	}
	clear := credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{AuthInfo: insecureInfo{}})
	secure := credentials.NewContextWithRequestInfo(context.Background(), credentials.RequestInfo{AuthInfo: tlsInfo{}})
	for _, tc := range []struct {
		ctx  context.Context
		uri  string
		send bool
	}{
		{clear, "https://127.0.0.1:8980/build.bazel.remote.execution.v2.Execution", true},
		{clear, "https://[::1]:8980/google.bytestream.ByteStream", true},
		{clear, "https://localhost/build.bazel.remote.execution.v2.Execution", true},
		{clear, "https://10.1.2.3:8980/build.bazel.remote.execution.v2.Execution", false},
		{clear, "https://farm.example.com/build.bazel.remote.execution.v2.Execution", false},
		{clear, "https://127.0.0.1.example.com:1/x", false},
		{context.Background(), "https://10.1.2.3:8980/x", false},
		{secure, "https://farm.example.com/x", true},
	} {
		md, err := c.GetRequestMetadata(tc.ctx, tc.uri)
		switch {
		case tc.send && (err != nil || md[authorizationHeader] != "Bearer secret"):
			t.Errorf("%s: %v %v, want the token", tc.uri, md, err)
		case !tc.send && (err == nil || md != nil || !strings.Contains(err.Error(), "--token-file")):
			t.Errorf("%s: %v %v, want an error naming --token-file and no token", tc.uri, md, err)
		}
	}
}

// insecureInfo and tlsInfo are the AuthInfo of a connection without and
// with TLS.
type insecureInfo struct{}

func (insecureInfo) AuthType() string { return "insecure" }

func (insecureInfo) GetCommonAuthInfo() credentials.CommonAuthInfo {
	return credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}
}

type tlsInfo struct{}

func (tlsInfo) AuthType() string { return "tls" }

func (tlsInfo) GetCommonAuthInfo() credentials.CommonAuthInfo {
	return credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}
}
