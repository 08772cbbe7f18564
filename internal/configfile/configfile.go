// Package configfile holds what the sections of tokenbroker's configuration
// file check alike: package config reads the file, and each section's
// package (provider, identity, webhook) owns its types and validation, but
// all of them decode YAML strictly, list every invalid field in one error,
// accept the same endpoint URLs and read secret files the same way.
package configfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// MaxBytes bounds a configuration document.
const MaxBytes = 1 << 20

// Decode reads one YAML document of at most [MaxBytes] from r into v.
// Unknown fields are errors (a misspelt field would otherwise be silently
// ignored); an empty document leaves v as it is.
func Decode(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxBytes+1))
	if err != nil {
		return err
	}
	if len(data) > MaxBytes {
		return fmt.Errorf("larger than %d bytes", MaxBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// ValidationError lists every invalid field that the validation of one
// section found. F is the section's own field error type, so each section
// has its own ValidationError (provider.ValidationError is
// ValidationError[*provider.FieldError]) and errors.As tells the sections
// of one configuration file apart.
type ValidationError[F error] struct {
	// Section names the section in the message ("provider", "webhook").
	Section string
	Errors  []F
}

// Error implements the error interface: one field per line.
func (e *ValidationError[F]) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.Error()
	}
	return "invalid " + e.Section + " configuration:\n  " + strings.Join(msgs, "\n  ")
}

// Unwrap returns the field errors, for errors.As.
func (e *ValidationError[F]) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// CheckURL returns why s is not a usable endpoint URL, or "": it must be
// absolute, without credentials or fragment, and use https, except for
// loopback hosts or when insecure (a section's insecure_http field) is set.
func CheckURL(s string, insecure bool) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return "not an absolute URL"
	}
	if u.User != nil {
		return "must not contain credentials"
	}
	if u.Fragment != "" {
		return "must not contain a fragment"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !insecure && !IsLoopback(u.Hostname()) {
			return "must use https (http is allowed for loopback hosts, or with insecure_http)"
		}
	default:
		return "scheme must be https"
	}
	return ""
}

// IsLoopback reports whether host (a URL's host name, without port) is
// localhost or a loopback address.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SplitList returns the items of a list written "a,b c": separated by
// commas or white space, empty items dropped. Lists in the configuration
// file's environment overrides, serve's flags and the console's forms are
// all written this way.
func SplitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// ReadFile is os.ReadFile with the error reduced to its cause ("no such
// file or directory"), for a field error that names the file itself.
func ReadFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if pe := (*os.PathError)(nil); errors.As(err, &pe) {
			return nil, pe.Err
		}
		return nil, err
	}
	return b, nil
}
