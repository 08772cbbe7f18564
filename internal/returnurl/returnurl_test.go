package returnurl

import "testing"

func TestAllowed(t *testing.T) {
	allow := []string{
		"https://app.example.com/settings/integrations",
		"http://127.0.0.1:8080/",
		"https://Other.Example.com",
	}
	tests := []struct {
		raw  string
		want bool
	}{
		{"https://app.example.com/settings/integrations", true},
		{"https://app.example.com/settings/integrations/", true},
		{"https://app.example.com/settings/integrations/github?x=1#top", true},
		{"https://APP.example.com:443/settings/integrations", true},
		{"http://127.0.0.1:8080/anything", true},
		{"https://other.example.com/", true},
		{"https://other.example.com", true},

		{"https://app.example.com/settings/integrationsevil", false},      // prefix without a slash boundary
		{"https://app.example.com/settings", false},                       // above the prefix
		{"https://app.example.com/settings/integrations/../admin", false}, // dot segment
		{"https://app.example.com/settings/integrations/%2e%2e/admin", false},
		{"https://app.example.com/settings/integrations%2f..%2fadmin", false},
		{"https://app.example.com/settings/integrations/%5c", false},
		{"http://app.example.com/settings/integrations", false},       // other scheme
		{"https://app.example.com:8443/settings/integrations", false}, // other port
		{"https://app.example.com.evil.com/settings/integrations", false},
		{"https://app.example.com@evil.com/settings/integrations", false}, // user info
		{"https://user:pw@app.example.com/settings/integrations", false},
		{"//app.example.com/settings/integrations", false}, // scheme-relative
		{"/settings/integrations", false},                  // relative
		{"https:/app.example.com/settings/integrations", false},
		{"https:app.example.com/settings/integrations", false},
		{"https://app.example.com\\@evil.com/settings/integrations", false}, // backslash
		{"https://evil.com\\.app.example.com/settings/integrations", false},
		{"https://app.example.com/settings/integrations\\..\\..\\admin", false},
		{"https://app.example.com/settings/integrations/\t", false},
		{"https://app.example.com/settings/integrations/ x", false},
		{"javascript://app.example.com/settings/integrations/%0aalert(1)", false},
		{"data:text/html,hi", false},
		{"https://127.0.0.1:8080/", false},
		{"http://127.0.0.1:8081/", false},
		{"http://127.0.0.1:8080@evil.com/", false},
		{"http://[::1]:8080/", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := Allowed(tt.raw, allow); got != tt.want {
			t.Errorf("Allowed(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestParseAllowEntryRejects(t *testing.T) {
	for _, s := range []string{
		"", "/relative", "//host/x", "ftp://host/", "https://u@host/", "https://host/?q=1",
		"https://host/#f", "https://host/a/../b", "https:host",
	} {
		if _, err := parseAllowEntry(s); err == nil {
			t.Errorf("parseAllowEntry(%q) accepted", s)
		}
	}
}
