package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/apikey"
)

// runCLI runs the tokenbroker command line in process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAPIKeysCreateListRevoke(t *testing.T) {
	dir := t.TempDir()
	db := []string{"--data-dir", dir, "--database-url", ""}

	code, out, errs := runCLI(t, append([]string{"apikeys", "create", "--name", "ci", "--scopes", "tokens:read,links:read", "--providers", "github", "--json"}, db...)...)
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errs)
	}
	var created struct {
		ID     int64    `json:"id"`
		Prefix string   `json:"prefix"`
		Scopes []string `json:"scopes"`
		Key    string   `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create output %q: %v", out, err)
	}
	prefix, _, err := apikey.Parse(created.Key)
	if err != nil || prefix != created.Prefix || len(created.Scopes) != 2 {
		t.Fatalf("created %+v: %v", created, err)
	}

	// The plain form prints the key once, too.
	code, out, errs = runCLI(t, append([]string{"apikeys", "create", "--name", "admin", "--scopes", "admin"}, db...)...)
	if code != 0 || !strings.Contains(out, "tbk_") || !strings.Contains(out, "not shown again") {
		t.Fatalf("create admin: exit %d: %s %s", code, out, errs)
	}

	code, out, _ = runCLI(t, append([]string{"apikeys", "list"}, db...)...)
	if code != 0 || !strings.Contains(out, created.Prefix) || !strings.Contains(out, "github") || strings.Contains(out, "tbk_") {
		t.Fatalf("list: exit %d:\n%s", code, out)
	}

	code, out, errs = runCLI(t, append([]string{"apikeys", "revoke", strconv.FormatInt(created.ID, 10)}, db...)...)
	if code != 0 || !strings.Contains(out, "Revoked") {
		t.Fatalf("revoke: exit %d: %s %s", code, out, errs)
	}
	code, out, _ = runCLI(t, append([]string{"apikeys", "list", "--json"}, db...)...)
	var rows []struct {
		ID        int64   `json:"id"`
		RevokedAt *string `json:"revoked_at"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 {
		t.Fatalf("list --json: exit %d: %s", code, out)
	}
	for _, r := range rows {
		if (r.ID == created.ID) != (r.RevokedAt != nil) {
			t.Errorf("row %+v: only key %d should be revoked", r, created.ID)
		}
	}

	for _, bad := range [][]string{
		{"apikeys", "create", "--name", "x", "--scopes", "root"},
		{"apikeys", "create", "--name", "x", "--scopes", "admin", "--users", "-bad"},
		{"apikeys", "revoke", "abc"},
	} {
		if code, _, errs := runCLI(t, append(bad, db...)...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d (%s), want 2 with a message", bad, code, errs)
		}
	}
	if code, _, errs := runCLI(t, append([]string{"apikeys", "revoke", "9999"}, db...)...); code != 1 || !strings.Contains(errs, "no API key") {
		t.Errorf("revoke unknown: exit %d: %s", code, errs)
	}
}

// TestAPIKeysCreateRepeatsRestrictions: apikeys create says which users
// and providers the stored key is restricted to; a bad id or a name with
// a control character is refused.
func TestAPIKeysCreateRepeatsRestrictions(t *testing.T) {
	db := []string{"--data-dir", t.TempDir(), "--database-url", ""}
	code, out, errs := runCLI(t, append([]string{"apikeys", "create", "--name", "ci", "--scopes", "tokens:read", "--users", "u2,u1", "--providers", "github"}, db...)...)
	if code != 0 || !strings.Contains(out, "for users u1,u2 and providers github") {
		t.Fatalf("create: exit %d: %s%s", code, out, errs)
	}
	code, out, _ = runCLI(t, append([]string{"apikeys", "create", "--name", "admin", "--scopes", "admin"}, db...)...)
	if code != 0 || !strings.Contains(out, "for any user and any provider") {
		t.Fatalf("create: exit %d: %s", code, out)
	}
	for _, id := range []string{"+1", "01", "1.0"} {
		if code, _, errs := runCLI(t, append([]string{"apikeys", "revoke", id}, db...)...); code != 2 {
			t.Fatalf("revoke %s: exit %d: %s", id, code, errs)
		}
	}
	if code, _, errs := runCLI(t, append([]string{"apikeys", "create", "--name", "ci\x1b[2J", "--scopes", "admin"}, db...)...); code != 2 {
		t.Fatalf("create with a control character: exit %d: %s", code, errs)
	}
	code, out, _ = runCLI(t, append([]string{"apikeys", "list"}, db...)...)
	if code != 0 || strings.Count(out, "\n") != 3 || strings.Count(out, " -\n") != 2 {
		t.Fatalf("list after the refused commands:\n%s", out)
	}
}
