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
// (`paddock storage` takes them from its config file), writing into cfg
// (up's storage section's assets).
func assetFlags(fs *flag.FlagSet, cfg *configs.Assets) {
	fs.Func("asset-allow-host", "host (or host:port) the Remote Asset API may download from (repeatable, added to storage.assets.allowed_hosts)", func(h string) error {
		cfg.AllowedHosts = append(cfg.AllowedHosts, h)
		return nil
	})
	fs.BoolVar(&cfg.AllowWithoutChecksum, "asset-allow-no-checksum", cfg.AllowWithoutChecksum, "let the Remote Asset API download content the client gave no checksum for (storage.assets.allow_without_checksum)")
}
