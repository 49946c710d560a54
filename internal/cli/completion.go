package cli

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/store"
)

var shells = []string{"bash", "zsh", "fish", "powershell"}

func (a *app) completionCmd() *cobra.Command {
	var noDesc bool
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script for bash, zsh, fish or PowerShell",
		Long: `Print the script that makes your shell complete strata's commands, flags,
image names (from the store) and Dockerfile stage names (--target).

bash (needs the bash-completion package), for this shell or for every one:

    source <(strata completion bash)
    strata completion bash > /etc/bash_completion.d/strata

zsh (compinit must be enabled):

    strata completion zsh > "${fpath[1]}/_strata"

fish:

    strata completion fish > ~/.config/fish/completions/strata.fish

PowerShell:

    strata completion powershell | Out-String | Invoke-Expression`,
		Example: `  source <(strata completion bash)
  strata completion zsh > ~/.zsh/completions/_strata`,
		ValidArgs:             shells,
		DisableFlagsInUseLine: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("\"strata completion\" needs the shell: bash, zsh, fish or powershell")
			}
			for _, s := range shells {
				if args[0] == s {
					return nil
				}
			}
			return usagef("completion for %q is not supported: use bash, zsh, fish or powershell", args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(a.stdout, !noDesc)
			case "zsh":
				if noDesc {
					return root.GenZshCompletionNoDesc(a.stdout)
				}
				return root.GenZshCompletion(a.stdout)
			case "fish":
				return root.GenFishCompletion(a.stdout, !noDesc)
			default:
				if noDesc {
					return root.GenPowerShellCompletion(a.stdout)
				}
				return root.GenPowerShellCompletionWithDesc(a.stdout)
			}
		},
	}
	cmd.Flags().BoolVar(&noDesc, "no-descriptions", false, "complete without descriptions")
	return cmd
}

// imageArgs says how many leading arguments of each command are images in
// the store (-1: all of them).
var imageArgs = map[string]int{
	"inspect": -1, "history": 1, "layers": 1, "rmi": -1, "tag": 1, "run": 1, "save": 1, "push": 1,
}

// addCompletions sets the shell completions of c where its file does not:
// store image names for image arguments, stage names for --target, and the
// values of enumerated flags.
func (a *app) addCompletions(c *cobra.Command) {
	if n, ok := imageArgs[c.Name()]; ok && c.ValidArgsFunction == nil {
		c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if n >= 0 && len(args) >= n {
				if c.Name() == "run" {
					return nil, cobra.ShellCompDirectiveDefault
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return a.imageNames(args, toComplete), cobra.ShellCompDirectiveNoFileComp
		}
	}
	fixed := map[string][]string{
		"progress":    {"auto", "tty", "plain", "json", "quiet"},
		"network":     {"host", "none"},
		"compression": {"gzip", "zstd", "uncompressed"},
	}
	switch c.Name() {
	case "graph":
		fixed["format"] = []string{"dot", "mermaid", "json"}
	case "save":
		fixed["format"] = []string{"docker", "oci"}
	}
	for name, values := range fixed {
		if c.Flags().Lookup(name) != nil {
			if _, exists := c.GetFlagCompletionFunc(name); !exists {
				_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
			}
		}
	}
	if c.Flags().Lookup("target") != nil && c.Flags().Lookup("file") != nil {
		if _, exists := c.GetFlagCompletionFunc("target"); !exists {
			_ = c.RegisterFlagCompletionFunc("target", func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return stageNames(cmd, args), cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
}

// imageNames lists the store's images (familiar names) for completion,
// leaving out those already on the command line. It does not create a store.
func (a *app) imageNames(args []string, prefix string) []cobra.Completion {
	if _, err := os.Stat(filepath.Join(a.root, "index.json")); err != nil {
		return nil
	}
	s, err := store.Open(a.root)
	if err != nil {
		return nil
	}
	defer s.Close()
	imgs, err := s.Images()
	if err != nil {
		return nil
	}
	used := map[string]bool{}
	for _, a := range args {
		used[a] = true
	}
	var out []string
	for _, im := range imgs {
		n := store.FamiliarName(im.Name)
		if strings.HasPrefix(n, prefix) && !used[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// stageNames lists the named stages of the Dockerfile that -f (or the
// context argument) points at.
func stageNames(cmd *cobra.Command, args []string) []cobra.Completion {
	file, _ := cmd.Flags().GetString("file")
	if file == "-" {
		return nil
	}
	if file == "" {
		dir := "."
		if len(args) > 0 {
			dir = args[0]
		}
		file = filepath.Join(dir, "Dockerfile")
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	df, err := dockerfile.Parse(filepath.Base(file), src)
	if err != nil {
		return nil
	}
	var out []string
	for _, st := range df.Stages {
		if st.Name != "" {
			out = append(out, strings.ToLower(st.Name))
		}
	}
	return out
}
