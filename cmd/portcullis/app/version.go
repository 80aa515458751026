package app

// Version is the build's version, set with -ldflags "-X portcullis.dev/portcullis/cmd/portcullis/app.Version=…".
var Version = "v0.1.0-dev"
