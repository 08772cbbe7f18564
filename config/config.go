// Package config reads tokenbroker's configuration file: one YAML document
// whose top-level sections each belong to the package that owns their
// types and validation (providers: package provider; workload_identities:
// package identity; webhooks: package webhook). A new section is one more
// inline field of [File].
package config

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tokenbroker/tokenbroker/identity"
	"github.com/tokenbroker/tokenbroker/internal/configfile"
	"github.com/tokenbroker/tokenbroker/provider"
	"github.com/tokenbroker/tokenbroker/webhook"
)

// File is the configuration file:
//
//	providers: [...]            # provider.Config
//	workload_identities: [...]  # identity.Config
//	webhooks: [...]             # webhook.Config
//
// Each section is inlined from its own package, so its YAML key and field
// types live next to the code that uses them.
type File struct {
	Providers provider.Config `yaml:",inline"`
	Identity  identity.Config `yaml:",inline"`
	Webhooks  webhook.Config  `yaml:",inline"`
}

// Parse reads a configuration document from r. Unknown fields, at the top
// level or in any section, are errors (a misspelt field would otherwise be
// silently ignored). It does not validate: call [File.Validate] after
// [provider.Config.ApplyEnv].
func Parse(r io.Reader) (*File, error) {
	f := &File{}
	if err := configfile.Decode(r, f); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return f, nil
}

// Load reads the file at path (none when path is ""), applies the
// provider environment overrides in environ (os.Environ() form) and
// validates the whole.
func Load(path string, environ []string) (*File, error) {
	f := &File{}
	if path != "" {
		fh, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		defer fh.Close()
		if f, err = Parse(fh); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := f.Providers.ApplyEnv(environ); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// Validate checks every section. The error joins each section's own
// validation error (a [*provider.ValidationError], a
// [*identity.ValidationError], a [*webhook.ValidationError]); find them
// with errors.As. Trust entries
// may only name configured providers.
func (f *File) Validate() error {
	perr := f.Providers.Validate()
	ids := make([]string, 0, len(f.Providers.Providers))
	for _, pc := range f.Providers.Providers {
		ids = append(ids, pc.ID)
	}
	ierr := f.Identity.Validate(ids)
	return errors.Join(perr, ierr, f.Webhooks.Validate())
}
