package crypt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tokenbroker/tokenbroker"
)

// DevKeyFile is the name of the key file the embedded default keeps in its
// data directory.
const DevKeyFile = "encryption.key"

// CheckRing verifies, before a server starts, that ring can open what the
// database holds: every key id that seals rows (per CountSealedByKey) must
// be in the ring, and a sample of sealed rows (the first link and pending
// auth request sealed by any key, and the first one not sealed by the
// primary) must open. It returns a [*RingMismatchError] whose message is
// one line naming the missing key ids, nil for an empty database.
//
// Rows with an empty key id hold no secret (every write through [Store]
// names its key); CheckRing ignores them.
func CheckRing(ctx context.Context, inner tokenbroker.Store, ring *Ring) error {
	counts, err := inner.CountSealedByKey(ctx)
	if err != nil {
		return fmt.Errorf("count sealed rows: %w", err)
	}
	var missing []string
	for id, n := range counts {
		if id != "" && n > 0 && !ring.Has(id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return &RingMismatchError{Missing: missing, Counts: counts}
	}
	// The ids match; open samples, which catches a key of the same id
	// (only by a deliberate collision) and anything that would make every
	// read fail, such as a store that does not keep values verbatim.
	for _, notBy := range []string{"", ring.PrimaryID()} {
		links, err := inner.ListLinksNotSealedBy(ctx, notBy, 0, 1)
		if err != nil {
			return fmt.Errorf("sample sealed links: %w", err)
		}
		for _, l := range links {
			if err := ring.openLink(l); err != nil {
				return &RingMismatchError{Counts: counts, Cause: err}
			}
		}
		reqs, err := inner.ListAuthRequestsNotSealedBy(ctx, notBy, 1)
		if err != nil {
			return fmt.Errorf("sample sealed auth requests: %w", err)
		}
		for _, r := range reqs {
			if err := ring.openAuthRequest(r, r.ID); err != nil {
				return &RingMismatchError{Counts: counts, Cause: err}
			}
		}
	}
	return nil
}

// HasSealedRows reports whether the database holds rows sealed by any key,
// and which key ids seal them, sorted.
func HasSealedRows(ctx context.Context, inner tokenbroker.Store) (bool, []string, error) {
	counts, err := inner.CountSealedByKey(ctx)
	if err != nil {
		return false, nil, fmt.Errorf("count sealed rows: %w", err)
	}
	var ids []string
	for id, n := range counts {
		if id != "" && n > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return len(ids) > 0, ids, nil
}

// DevKeyPath returns the path of the embedded default's key file in
// dataDir.
func DevKeyPath(dataDir string) string { return filepath.Join(dataDir, DevKeyFile) }

// LoadOrCreateDevKey loads the key ring of the embedded default from
// <dataDir>/encryption.key, creating the directory (0700) and the file
// (0600, one new random key) if the file does not exist. created reports
// that a new key was generated: the caller says so at start, because
// losing that file loses every stored token.
//
// Creation is atomic: the key is written to a temporary file that is then
// hard-linked into place, so a crash never leaves an empty key file and two
// processes starting together end with the same key.
func LoadOrCreateDevKey(dataDir string) (ring *Ring, created bool, err error) {
	path := DevKeyPath(dataDir)
	ring, err = LoadKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return ring, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data directory: %w", err)
	}
	k, err := GenerateKey(nil)
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
	ring, err = LoadKeyFile(path)
	return ring, created && err == nil, err
}

// LoadOrCreateDevRing is [LoadOrCreateDevKey] for a server about to run on
// inner: when the key file is missing but the database already holds
// sealed rows (the file was lost, or the data directory was moved without
// it), it refuses with one line instead of generating a key that cannot
// open them, and creates nothing. It does not run [CheckRing].
func LoadOrCreateDevRing(ctx context.Context, inner tokenbroker.Store, dataDir string) (ring *Ring, created bool, err error) {
	path := DevKeyPath(dataDir)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		sealed, ids, err := HasSealedRows(ctx, inner)
		if err != nil {
			return nil, false, err
		}
		if sealed {
			return nil, false, fmt.Errorf("database holds tokens sealed by keys [%s] but the key file %s does not exist: restore it, or set %s", strings.Join(ids, " "), path, EnvKeys)
		}
	}
	return LoadOrCreateDevKey(dataDir)
}
