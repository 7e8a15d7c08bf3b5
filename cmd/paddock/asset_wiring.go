package main

import (
	"flag"
	"log/slog"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/storage"
)

// newAssetServer builds the Remote Asset API services over cas, with their
// records under dir. `paddock storage` and `paddock up` serve them next to
// the CAS.
func newAssetServer(cas storage.BlobStore, dir string, cfg configs.Assets, logger *slog.Logger) (*asset.Server, error) {
	return asset.New(asset.Options{
		CAS: cas, Dir: dir, AllowedHosts: cfg.AllowedHosts, AllowWithoutChecksum: cfg.AllowWithoutChecksum,
		FetchTimeout: cfg.FetchTimeout, MaxFetchBytes: int64(cfg.MaxFetchBytes), Logger: logger,
	})
}

// registerAssetProxy serves the Remote Asset API on g by forwarding it to
// the storage at addr (`paddock scheduler` fronts storage); the returned
// function closes the connection.
func registerAssetProxy(g *grpc.Server, addr string, dial []grpc.DialOption) (func(), error) {
	conn, err := dialStorage(addr, dial)
	if err != nil {
		return nil, err
	}
	asset.NewProxy(conn).Register(g)
	return func() { conn.Close() }, nil
}

// assetFlags adds `paddock up`'s flags for the Remote Asset API to fs
// (`paddock storage` takes them from its config file) and returns the
// config they fill, the defaults otherwise.
func assetFlags(fs *flag.FlagSet) *configs.Assets {
	cfg := configs.DefaultStorage().Assets
	fs.Func("asset-allow-host", "host (or host:port) the Remote Asset API may download from (repeatable; see configs/storage.yaml's assets)", func(h string) error {
		cfg.AllowedHosts = append(cfg.AllowedHosts, h)
		return nil
	})
	fs.BoolVar(&cfg.AllowWithoutChecksum, "asset-allow-no-checksum", false, "let the Remote Asset API download content the client gave no checksum for")
	return &cfg
}
