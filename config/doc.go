// Package config owns ferry's one typed configuration: its keys and
// embedded defaults, loading from a YAML file, FERRY_* environment variables
// and flags (Load), side-effect-free validation whose errors name the key and
// the fix (Validate), and printing with secrets redacted.
package config
