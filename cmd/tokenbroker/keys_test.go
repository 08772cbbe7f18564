package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/crypt"
)

func runKeys(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestKeysGenerate(t *testing.T) {
	out, _, code := runKeys(t, "keys", "generate")
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if code != 0 || err != nil || len(k) != 32 {
		t.Fatalf("keys generate: %q code %d err %v", out, code, err)
	}
}

// TestKeysRotationThenRekey: links sealed by an old key; the new key is
// put first; rekey re-seals every row; status shows none on the old key
// and says it can be dropped; the new key alone opens everything.
func TestKeysRotationThenRekey(t *testing.T) {
	dir := t.TempDir()
	oldKey, _ := crypt.GenerateKey(nil)
	newKey, _ := crypt.GenerateKey(nil)
	oldRing, _ := crypt.ParseKeys(oldKey)
	newRing, _ := crypt.ParseKeys(newKey)
	ctx := context.Background()

	h := mustOpenMigrated(t, dir)
	sealed := crypt.NewStore(h.Store(), oldRing)
	const n = 25
	for i := range n {
		u := fmt.Sprintf("user%02d", i)
		if _, err := sealed.PutLink(ctx, &tokenbroker.Link{UserID: u, ProviderID: "github",
			Token: tokenbroker.Token{AccessToken: "at-" + u, RefreshToken: "rt-" + u}}, tokenbroker.Record{}); err != nil {
			t.Fatal(err)
		}
	}
	h.Close()

	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", oldKey)
	out, _, code := runKeys(t, "keys", "status", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, oldRing.PrimaryID()) || !strings.Contains(out, fmt.Sprint(n)) {
		t.Fatalf("status before: code %d\n%s", code, out)
	}

	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", newKey+","+oldKey)
	out, errOut, code := runKeys(t, "keys", "rekey", "--data-dir", dir, "--batch-size", "7")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("re-sealed %d links", n)) {
		t.Fatalf("rekey: code %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "rekey:") {
		t.Fatalf("no plain progress lines on a non-terminal:\n%s", errOut)
	}
	out, _, _ = runKeys(t, "keys", "status", "--data-dir", dir)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, oldRing.PrimaryID()) && (!strings.Contains(line, " 0 ") || !strings.Contains(line, "can be dropped")) {
			t.Fatalf("old key still seals rows:\n%s", out)
		}
	}

	h = mustOpenMigrated(t, dir)
	defer h.Close()
	counts, _ := h.Store().CountSealedByKey(ctx)
	if counts[oldRing.PrimaryID()] != 0 || counts[newRing.PrimaryID()] != n {
		t.Fatalf("counts after rekey: %v", counts)
	}
	l, err := crypt.NewStore(h.Store(), newRing).GetLink(ctx, "user07", "github")
	if err != nil || l.Token.AccessToken != "at-user07" || l.Token.RefreshToken != "rt-user07" {
		t.Fatalf("the new key alone does not open the re-sealed link: %v", err)
	}
}

// TestKeysWrongRingRefused: a ring without the key that sealed the rows is
// refused with one line that names no key material.
func TestKeysWrongRingRefused(t *testing.T) {
	dir := t.TempDir()
	k1, _, k2 := mustSealWithOtherKey(t, dir)
	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", k2)
	_, errOut, code := runKeys(t, "keys", "rekey", "--data-dir", dir)
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || strings.Contains(errOut, k1) || strings.Contains(errOut, k2) {
		t.Fatalf("wrong ring: code %d, stderr %q", code, errOut)
	}
}

// TestKeysUnmigratedRefused: status and rekey do not migrate; on a data
// directory without a schema they say so in one line.
func TestKeysUnmigratedRefused(t *testing.T) {
	dir := t.TempDir()
	k, _ := crypt.GenerateKey(nil)
	t.Setenv("TOKENBROKER_ENCRYPTION_KEYS", k)
	for _, sub := range []string{"status", "rekey"} {
		_, errOut, code := runKeys(t, "keys", sub, "--data-dir", dir)
		if code != 1 || !strings.Contains(errOut, "no tokenbroker schema yet") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("keys %s on an empty data dir: code %d, stderr %q", sub, code, errOut)
		}
	}
}

// mustOpenMigrated opens and migrates the SQLite database in dir.
func mustOpenMigrated(t *testing.T, dir string) storeHandle {
	t.Helper()
	ctx := context.Background()
	h, err := openStore(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Migrate(ctx); err != nil {
		h.Close()
		t.Fatal(err)
	}
	return h
}

// mustSealWithOtherKey stores one link sealed by a fresh key in the SQLite
// database in dir (migrated first) and returns that key, its ring, and
// another fresh key, which cannot open the link.
func mustSealWithOtherKey(t *testing.T, dir string) (sealing string, ring *crypt.Ring, other string) {
	t.Helper()
	sealing, err := crypt.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if other, err = crypt.GenerateKey(nil); err != nil {
		t.Fatal(err)
	}
	if ring, err = crypt.ParseKeys(sealing); err != nil {
		t.Fatal(err)
	}
	h := mustOpenMigrated(t, dir)
	defer h.Close()
	if _, err := crypt.NewStore(h.Store(), ring).PutLink(context.Background(), &tokenbroker.Link{UserID: "u", ProviderID: "github",
		Token: tokenbroker.Token{AccessToken: "a", RefreshToken: "r"}}, tokenbroker.Record{}); err != nil {
		t.Fatal(err)
	}
	return sealing, ring, other
}
