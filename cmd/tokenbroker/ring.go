package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/tokenbroker/tokenbroker/crypt"
)

// loadServeRing finds the encryption key ring for serve and dev:
// TOKENBROKER_ENCRYPTION_KEYS, else the key file, else (SQLite only) a key
// generated into the data directory. It then checks that the ring opens
// the rows already in the database, so a wrong key refuses to start with
// one clear line instead of failing token by token.
func loadServeRing(ctx context.Context, h storeHandle, keyFile, dataDir string, log *slog.Logger) (*crypt.Ring, error) {
	ring, found, err := loadConfiguredRing(keyFile)
	switch {
	case found:
		if err != nil {
			return nil, err
		}
	case h.Kind() == "sqlite":
		var created bool
		if ring, created, err = loadOrCreateDevRing(ctx, h.Store(), dataDir); err != nil {
			return nil, fmt.Errorf("encryption key in the data directory: %w", err)
		}
		if created {
			log.Warn("generated a new encryption key; back it up, tokens cannot be read without it",
				"path", devKeyPath(dataDir), "key_id", ring.PrimaryID())
		}
	default:
		return nil, errors.New("no encryption key: set TOKENBROKER_ENCRYPTION_KEYS or --key-file (make one with `tokenbroker keys generate`)")
	}
	if err := crypt.CheckRing(ctx, h.Store(), ring); err != nil {
		return nil, err
	}
	log.Info("encryption key ring loaded", "primary_key_id", ring.PrimaryID(), "keys", len(ring.KeyIDs()))
	return ring, nil
}

// loadConfiguredRing loads the ring an operator configured:
// TOKENBROKER_ENCRYPTION_KEYS, else the key file. found is false when
// neither is set, leaving the fallback to the caller (serve creates a dev
// key, keys only reads one).
func loadConfiguredRing(keyFile string) (ring *crypt.Ring, found bool, err error) {
	switch {
	case os.Getenv(crypt.EnvKeys) != "":
		if ring, err = crypt.ParseKeys(os.Getenv(crypt.EnvKeys)); err != nil {
			return nil, true, fmt.Errorf("%s: %w", crypt.EnvKeys, err)
		}
		return ring, true, nil
	case keyFile != "":
		if ring, err = crypt.LoadKeyFile(keyFile); err != nil {
			return nil, true, fmt.Errorf("key file: %w", err)
		}
		return ring, true, nil
	}
	return nil, false, nil
}
