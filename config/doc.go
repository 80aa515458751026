// Package config is Portcullis' one configuration type: a versioned YAML
// file, pflag flags named as Kubernetes components name theirs (flags win),
// defaults, and validation that reports every problem at once.
package config
