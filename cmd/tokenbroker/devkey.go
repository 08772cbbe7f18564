package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/crypt"
)

// devKeyFile is the name of the key file the embedded default keeps in its
// data directory: the dev-key file policy belongs to the command, the key
// format and sealing to package crypt.
const devKeyFile = "encryption.key"

// devKeyPath returns the path of the embedded default's key file in
// dataDir.
func devKeyPath(dataDir string) string { return filepath.Join(dataDir, devKeyFile) }

// loadOrCreateDevKey loads the key ring of the embedded default from
// <dataDir>/encryption.key, creating the directory (0700) and the file
// (0600, one new random key) if the file does not exist. created reports
// that a new key was generated: the caller says so at start, because
// losing that file loses every stored token.
//
// Creation is atomic: the key is written to a temporary file that is then
// hard-linked into place, so a crash never leaves an empty key file and two
// processes starting together end with the same key.
func loadOrCreateDevKey(dataDir string) (ring *crypt.Ring, created bool, err error) {
	path := devKeyPath(dataDir)
	ring, err = crypt.LoadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return ring, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data directory: %w", err)
	}
	k, err := crypt.GenerateKey(nil)
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(dataDir, ".encryption.key-*")
	if err != nil {
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	content := "# tokenbroker encryption key ring (TOKENBROKER_ENCRYPTION_KEYS format), primary first.\n" +
		"# Losing this file loses every stored token. See docs/keys.md.\n" + k + "\n"
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	_, werr := tmp.WriteString(content)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, false, fmt.Errorf("write key file: %w", err)
	}
	switch err := os.Link(tmp.Name(), path); {
	case err == nil:
		created = true
	case errors.Is(err, fs.ErrExist):
		// Another process created it first: use its key.
	default:
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	ring, err = crypt.LoadKeyFile(path)
	return ring, created && err == nil, err
}

// loadOrCreateDevRing is loadOrCreateDevKey for a server about to run on
// inner: when the key file is missing but the database already holds
// sealed rows (the file was lost, or the data directory was moved without
// it), it refuses with one line instead of generating a key that cannot
// open them, and creates nothing. It does not run crypt.CheckRing.
func loadOrCreateDevRing(ctx context.Context, inner tokenbroker.Store, dataDir string) (ring *crypt.Ring, created bool, err error) {
	path := devKeyPath(dataDir)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		sealed, ids, err := crypt.HasSealedRows(ctx, inner)
		if err != nil {
			return nil, false, err
		}
		if sealed {
			return nil, false, fmt.Errorf("database holds tokens sealed by keys [%s] but the key file %s does not exist: restore it, or set %s", strings.Join(ids, " "), path, crypt.EnvKeys)
		}
	}
	return loadOrCreateDevKey(dataDir)
}
