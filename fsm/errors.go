package fsm

import "errors"

// Errors returned in apply results; the API server maps them to HTTP codes.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrConflict      = errors.New("conflict")
	ErrForbidden     = errors.New("forbidden")
	ErrInvalid       = errors.New("invalid")
	ErrBadCommand    = errors.New("malformed command")
	// ErrFromTheFuture means a command was written by a newer version of
	// orch that this server cannot apply; applying a guess would make this
	// server's state diverge from its peers', so the FSM halts instead.
	ErrFromTheFuture = errors.New("command written by a newer orch version")
	// ErrGone means a watch asked for history older than what is retained.
	ErrGone = errors.New("requested resource version is too old")
)
