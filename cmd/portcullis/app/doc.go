// Package app implements the portcullis subcommands; cmd/portcullis only
// dispatches to them. Tests drive the same functions the binary runs.
package app
