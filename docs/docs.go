// Package docs holds tokenbroker's documentation, embedded in the binary
// so that the server's front door can link to it and serve it under
// /docs/ (package web).
package docs

import "embed"

// FS holds the Markdown files of this folder.
//
//go:embed *.md
var FS embed.FS
