package webhook

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/configfile"
)

// Config is the webhooks: section of the configuration file (package
// config inlines it), a list of endpoints:
//
//	webhooks:
//	  - url: https://platform.example.com/hooks/tokenbroker
//	    secret_file: /run/secrets/tokenbroker-webhook
//	    events: [link.reauth_required, link.recovered]
//
// Check it with [Config.Validate], then load the secrets with
// [Config.Endpoints].
type Config struct {
	Webhooks []EndpointConfig `yaml:"webhooks"`
}

// EndpointConfig configures one receiver.
type EndpointConfig struct {
	// ID names the endpoint in the outbox, the dead letters and the
	// metrics. Default: the URL's host and path. Changing it abandons the
	// endpoint's pending deliveries to the retry window.
	ID string `yaml:"id"`
	// URL receives a POST per event. It must use https, except for
	// loopback hosts or with InsecureHTTP.
	URL string `yaml:"url"`
	// Secret is the signing secret, "whsec_" and base64; SecretFile names
	// a file holding it. Exactly one is set. Either may hold several
	// secrets separated by spaces or newlines during a rotation: each
	// signs, and receivers accept a message signed by any of theirs.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Events lists the event types the endpoint receives; empty: all.
	Events []string `yaml:"events"`
	// InsecureHTTP allows a plain http:// URL to a host other than
	// loopback, for receivers inside a trusted network.
	InsecureHTTP bool `yaml:"insecure_http"`
}

// FieldError is one invalid field of the webhooks section. Its message
// never contains a secret.
type FieldError struct {
	Endpoint string // the endpoint's id, or "#N" (1-based position)
	Field    string
	Msg      string
}

// Error implements the error interface.
func (e *FieldError) Error() string {
	return fmt.Sprintf("webhook %s: %s: %s", e.Endpoint, e.Field, e.Msg)
}

// ValidationError lists every invalid field [Config.Validate] or
// [Config.Endpoints] found: one field per line, and the field errors for
// errors.As.
type ValidationError = configfile.ValidationError[*FieldError]

// invalid returns the [*ValidationError] of errs.
func invalid(errs []*FieldError) *ValidationError {
	return &ValidationError{Section: "webhook", Errors: errs}
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:-]{0,199}$`)

// EndpointID returns the endpoint's id: ID, or the URL's host and path.
func (ec *EndpointConfig) EndpointID() string {
	if ec.ID != "" {
		return ec.ID
	}
	u, err := url.Parse(ec.URL)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Host+u.EscapedPath(), "/")
}

// Validate checks every endpoint and returns a [*ValidationError] or nil.
// It reads no file: [Config.Endpoints] reads the secret files.
func (c Config) Validate() error {
	var errs []*FieldError
	seen := map[string]int{}
	for i := range c.Webhooks {
		ec := &c.Webhooks[i]
		name := ec.EndpointID()
		if name == "" || !idRe.MatchString(name) {
			name = fmt.Sprintf("#%d", i+1)
		}
		bad := func(field, format string, args ...any) {
			errs = append(errs, &FieldError{Endpoint: name, Field: field, Msg: fmt.Sprintf(format, args...)})
		}
		if ec.ID != "" && !idRe.MatchString(ec.ID) {
			bad("id", "%q: want 1-200 characters of letters, digits and ._/:-", tokenbroker.Truncate(ec.ID, 40))
		}
		if msg := checkURL(ec.URL, ec.InsecureHTTP); msg != "" {
			bad("url", "%s", msg)
		} else if ec.ID == "" && !idRe.MatchString(ec.EndpointID()) {
			bad("id", "required: the URL's host and path do not make an id")
		}
		switch {
		case ec.Secret != "" && ec.SecretFile != "":
			bad("secret", "set secret or secret_file, not both")
		case ec.Secret == "" && ec.SecretFile == "":
			bad("secret", "required (or secret_file); make one with `tokenbroker webhooks secret`")
		case ec.Secret != "":
			if _, err := ParseSecrets(ec.Secret); err != nil {
				bad("secret", "%v", err)
			}
		}
		for _, ev := range ec.Events {
			if !tokenbroker.EventType(ev).Valid() {
				bad("events", "unknown event type %q (want one of %s)", tokenbroker.Truncate(ev, 40), eventList())
			}
		}
		if id := ec.EndpointID(); id != "" {
			if j, ok := seen[id]; ok {
				bad("id", "duplicate id (also webhook #%d); set id to tell them apart", j+1)
			}
			seen[id] = i
		}
	}
	if len(errs) > 0 {
		return invalid(errs)
	}
	return nil
}

func eventList() string {
	var s []string
	for _, t := range tokenbroker.EventTypes() {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

// checkURL returns why s is not a usable receiver URL, or "".
func checkURL(s string, insecure bool) string {
	if s == "" {
		return "required"
	}
	return configfile.CheckURL(s, insecure)
}

// Endpoint is a validated endpoint with its keys loaded.
type Endpoint struct {
	ID   string
	URL  string
	Keys [][]byte // HMAC keys, the first is the newest
	// Events is the set of wanted types; nil: all.
	Events map[tokenbroker.EventType]bool
}

// Wants reports whether the endpoint receives events of type t.
func (e *Endpoint) Wants(t tokenbroker.EventType) bool {
	return e.Events == nil || e.Events[t]
}

// Endpoints validates c and returns its endpoints with their secrets
// loaded (reading each secret_file). Errors never contain a secret.
func (c Config) Endpoints() ([]*Endpoint, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	out := make([]*Endpoint, 0, len(c.Webhooks))
	var errs []*FieldError
	for i := range c.Webhooks {
		ec := &c.Webhooks[i]
		keys, err := ec.loadKeys()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e := &Endpoint{ID: ec.EndpointID(), URL: ec.URL, Keys: keys}
		if len(ec.Events) > 0 {
			e.Events = map[tokenbroker.EventType]bool{}
			for _, t := range ec.Events {
				e.Events[tokenbroker.EventType(t)] = true
			}
		}
		out = append(out, e)
	}
	if len(errs) > 0 {
		return nil, invalid(errs)
	}
	return out, nil
}

// SecretSource says where the endpoint's secret comes from, never what it
// is, for `tokenbroker providers check`; the error says why a secret file
// cannot be used.
func (ec *EndpointConfig) SecretSource() (string, error) {
	if ec.SecretFile == "" {
		return "set (inline)", nil
	}
	keys, err := ec.loadKeys()
	if err != nil {
		return "from file " + ec.SecretFile + " (unusable)", err
	}
	if len(keys) > 1 {
		return fmt.Sprintf("from file %s (%d secrets: rotating)", ec.SecretFile, len(keys)), nil
	}
	return "from file " + ec.SecretFile, nil
}

func (ec *EndpointConfig) loadKeys() ([][]byte, *FieldError) {
	field, text := "secret", ec.Secret
	if ec.SecretFile != "" {
		field = "secret_file"
		b, err := configfile.ReadFile(ec.SecretFile)
		if err != nil {
			return nil, &FieldError{Endpoint: ec.EndpointID(), Field: field, Msg: fmt.Sprintf("cannot read %s: %v", ec.SecretFile, err)}
		}
		text = string(b)
	}
	keys, err := ParseSecrets(text)
	if err != nil {
		return nil, &FieldError{Endpoint: ec.EndpointID(), Field: field, Msg: err.Error()}
	}
	return keys, nil
}

// Types returns the event types the endpoint configuration receives, for
// display: "all" when Events is empty.
func (ec *EndpointConfig) Types() string {
	if len(ec.Events) == 0 {
		return "all"
	}
	s := slices.Clone(ec.Events)
	slices.Sort(s)
	return strings.Join(s, " ")
}
