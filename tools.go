//go:build tools

// Package tools pins dependencies that the tree adopts package by package, so
// that go.mod stays stable while they are wired in.
package tools

import (
	_ "github.com/HdrHistogram/hdrhistogram-go"
	_ "github.com/anishathalye/porcupine"
	_ "github.com/chzyer/readline"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/spf13/cobra"
	_ "github.com/tidwall/redcon"
	_ "go.uber.org/goleak"
	_ "gopkg.in/yaml.v3"
)
