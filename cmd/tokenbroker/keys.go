package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tokenbroker/tokenbroker/crypt"
)

func init() { commands = append(commands, newKeysCmd) }

// keysFlags are the flags of the keys subcommands that open the database.
type keysFlags struct {
	databaseURL, dataDir, keyFile string
}

func (f *keysFlags) bind(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	bindDBFlags(fs, &f.databaseURL, &f.dataDir, getenvFrom)
	fs.StringVar(&f.keyFile, "key-file", getenvFrom("TOKENBROKER_ENCRYPTION_KEY_FILE"), "encryption key file (env TOKENBROKER_ENCRYPTION_KEY_FILE; or keys in TOKENBROKER_ENCRYPTION_KEYS)")
}

func newKeysCmd() *cobra.Command {
	f := &keysFlags{}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Encryption keys: generate a key, show which keys seal how many rows, re-seal with the primary",
		Long: `Token fields are sealed with AES-256-GCM under a key ring: the first key seals,
every key opens. To rotate: generate a key; add it last in
TOKENBROKER_ENCRYPTION_KEYS (or the key file) of every replica and restart them,
so every replica can open it; then move it first everywhere and restart again;
run "keys rekey"; when "keys status" shows no rows on the old key, drop it.
See docs/keys.md.`,
		Example: `  tokenbroker keys generate
  tokenbroker keys status --database-url postgres://tb@db/tokenbroker
  tokenbroker keys rekey --database-url postgres://tb@db/tokenbroker`,
	}
	f.bind(cmd)
	cmd.AddCommand(newKeysGenerateCmd(), newKeysStatusCmd(f), newKeysRekeyCmd(f))
	return cmd
}

func newKeysGenerateCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "generate",
		Short:   "Print a new random encryption key (standard base64)",
		Example: "  TOKENBROKER_ENCRYPTION_KEYS=$(tokenbroker keys generate) tokenbroker serve --database-url postgres://...",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := crypt.GenerateKey(nil)
			if err != nil {
				return exitf(1, "%v", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), k)
			return nil
		},
	}
}

func newKeysStatusCmd(f *keysFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show how many rows each key seals, so you know when an old key can be dropped",
		Example: "  tokenbroker keys status --database-url postgres://tb@db/tokenbroker",
		Args:    cobra.NoArgs,
		RunE: withKeysStore(f, func(ctx context.Context, cmd *cobra.Command, h storeHandle) error {
			counts, err := h.Store().CountSealedByKey(ctx)
			if err != nil {
				return exitf(1, "count sealed rows: %s", oneLine(err))
			}
			// The ring is optional here: without one, status still counts.
			ring, ringErr := loadKeysRing(f, h.Kind())
			writeKeyStatus(cmd.OutOrStdout(), counts, ring)
			if ringErr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: no key ring loaded (%s); showing counts only\n", oneLine(ringErr))
			}
			return nil
		}),
	}
}

// withKeysStore is the RunE of a keys command that works on the database:
// it opens it (openKeysStore), runs fn and closes it.
func withKeysStore(f *keysFlags, fn func(ctx context.Context, cmd *cobra.Command, h storeHandle) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		h, err := openKeysStore(cmd.Context(), f)
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(cmd.Context(), cmd, h)
	}
}

// openKeysStore opens the database for status and rekey. It does not
// migrate (a key tool should not change the schema under running
// replicas); it refuses a database whose schema is not current, with the
// command that fixes it.
func openKeysStore(ctx context.Context, f *keysFlags) (storeHandle, error) {
	h, err := openStore(ctx, f.databaseURL, f.dataDir)
	if err != nil {
		return nil, exitf(1, "open database: %s", oneLine(err))
	}
	cur, latest, err := h.SchemaVersion(ctx)
	switch {
	case err != nil:
		h.Close()
		return nil, exitf(1, "read schema version of %s: %s", h.Describe(), oneLine(err))
	case cur == 0:
		h.Close()
		return nil, exitf(1, "%s has no tokenbroker schema yet (nothing is sealed); check --database-url / --data-dir", h.Describe())
	case cur < latest:
		h.Close()
		return nil, exitf(1, "%s has schema version %d, this binary needs %d: run `tokenbroker migrate` first", h.Describe(), cur, latest)
	}
	return h, nil
}

// loadKeysRing loads the ring like serve does, without creating a dev key.
func loadKeysRing(f *keysFlags, kind string) (*crypt.Ring, error) {
	if ring, found, err := loadConfiguredRing(f.keyFile); found {
		return ring, err
	}
	if kind == "sqlite" {
		return crypt.LoadKeyFile(devKeyPath(f.dataDir))
	}
	return nil, fmt.Errorf("set TOKENBROKER_ENCRYPTION_KEYS or --key-file")
}

func writeKeyStatus(w io.Writer, counts map[string]int64, ring *crypt.Ring) {
	ids := make([]string, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	if ring != nil {
		for _, id := range ring.KeyIDs() {
			if _, ok := counts[id]; !ok {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tROWS\tIN RING\tNOTE")
	var total int64
	for _, id := range ids {
		n := counts[id]
		total += n
		name, inRing, note := id, "-", ""
		if id == "" {
			name, note = "(none)", "stored unsealed: written below the crypt layer"
		}
		if ring != nil && id != "" {
			inRing = "no"
			if ring.Has(id) {
				inRing = "yes"
			}
			switch {
			case id == ring.PrimaryID():
				note = "primary: seals new values"
			case ring.Has(id) && n == 0:
				note = "seals no rows: can be dropped from the ring"
			case ring.Has(id):
				note = "run `tokenbroker keys rekey` to move these rows to the primary"
			default:
				note = "NOT IN THE RING: these rows cannot be opened"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", name, n, inRing, note)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d sealed rows (links and pending authorizations)\n", total)
}

func newKeysRekeyCmd(f *keysFlags) *cobra.Command {
	var batch int
	cmd := &cobra.Command{
		Use:   "rekey",
		Short: "Re-seal every row with the primary key, online, in batches, resumable",
		Long: `rekey re-seals every row not sealed by the primary key of the ring. It runs
online while replicas serve and refresh: each row is written by compare-and-swap
on its generation, so a refresh that commits meanwhile wins and is never lost.
It only ever reads rows not yet sealed by the primary, so after an interruption
running it again continues where it stopped.`,
		Example: `  TOKENBROKER_ENCRYPTION_KEYS=NEWKEY,OLDKEY tokenbroker keys rekey --database-url postgres://tb@db/tokenbroker`,
		Args:    cobra.NoArgs,
		RunE: withKeysStore(f, func(ctx context.Context, cmd *cobra.Command, h storeHandle) error {
			ring, err := loadKeysRing(f, h.Kind())
			if err != nil {
				return exitf(1, "key ring: %s", oneLine(err))
			}
			if err := crypt.CheckRing(ctx, h.Store(), ring); err != nil {
				return exitf(1, "%s", oneLine(err))
			}
			stderr := cmd.ErrOrStderr()
			progress := plainProgress(stderr)
			var bar *progressbar.ProgressBar
			if fd, ok := stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
				progress = func(done, total int64) {
					if bar == nil {
						bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr),
							progressbar.OptionSetDescription("re-sealing"), progressbar.OptionShowCount(),
							progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
					}
					if total > bar.GetMax64() {
						bar.ChangeMax64(total)
					}
					_ = bar.Set64(done)
				}
			}
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			start := time.Now()
			res, err := crypt.Rekey(ctx, h.Store(), ring, crypt.RekeyOptions{BatchSize: batch, Progress: progress, Logger: log})
			if bar != nil {
				_ = bar.Finish()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-sealed %d links and %d pending authorizations with key %s in %s (%d passes, %d retried after a concurrent refresh, %d already re-sealed, %d gone, %d failed)\n",
				res.Links, res.AuthRequests, ring.PrimaryID(), time.Since(start).Round(time.Millisecond), res.Passes, res.CASRetries, res.AlreadySealed, res.Gone, res.Failed)
			if err != nil {
				return exitf(1, "rekey: %s", oneLine(err))
			}
			return nil
		}),
	}
	cmd.Flags().IntVar(&batch, "batch-size", crypt.DefaultRekeyBatchSize, "rows read per batch")
	return cmd
}

// plainProgress prints a progress line at most once a second, and at the
// end, for output that is not a terminal.
func plainProgress(w io.Writer) func(done, total int64) {
	var last time.Time
	lastDone, lastTotal := int64(-1), int64(-1)
	return func(done, total int64) {
		if done == lastDone && total == lastTotal || time.Since(last) < time.Second && done < total {
			return
		}
		last, lastDone, lastTotal = time.Now(), done, total
		pct := 100.0
		if total > 0 {
			pct = float64(done) * 100 / float64(total)
		}
		fmt.Fprintf(w, "rekey: %d/%d rows (%.0f%%)\n", done, total, pct)
	}
}
