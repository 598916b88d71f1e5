package main

import "github.com/spf13/cobra"

// addCommands registers every command except `server` (server.go).
func addCommands(root *cobra.Command) {
	root.AddCommand(
		newDevCmd(),
		newGetCmd(), newSetCmd(), newDelCmd(), newIncrCmd(), newKeysCmd(),
		newStatusCmd(), newMembersCmd(), newLeaderCmd(), newSnapshotCmd(),
		newShellCmd(), newBenchCmd(),
	)
}
