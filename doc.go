// Package tokenbroker holds the domain of tokenbroker: users' OAuth2 links to
// external providers ([Link]), the tokens they carry ([Token]), the
// providers that issue them ([Provider]), API keys, connect sessions, the
// audit trail, the application error type ([Error]) and the [Store]
// interface that says everything the rest of the program may ask of storage.
//
// Every other package imports this one and, where it can, nothing beside it:
// store/sqlite and store/postgres implement [Store], crypt decorates it,
// refresh runs the refresh protocol of docs/design.md on top of it, httpapi and
// web expose it. Only cmd/tokenbroker wires concrete things together.
package tokenbroker
