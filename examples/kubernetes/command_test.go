package kubernetes

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// command is one strata command line: strata [GLOBAL FLAGS] SUBCOMMAND [FLAGS] ARGS.
type command struct {
	line  string              // as written
	sub   string              // build, push, ...
	flags map[string][]string // long flag name (or t) -> values, global and subcommand alike
	order []string            // flag names in order, "|" marking the subcommand
	args  []string
}

// valueFlags are the strata flags these examples use that take a value.
var valueFlags = map[string]bool{"isolation": true, "root": true, "config": true, "progress": true,
	"cache-from": true, "cache-to": true, "output": true, "o": true, "tag": true, "t": true,
	"file": true, "f": true, "target": true, "build-arg": true, "platform": true, "metadata-file": true}

// parseCommand parses the words of a strata command line (words[0] is strata).
func parseCommand(line string, words []string) command {
	c := command{line: line, flags: map[string][]string{}}
	for i := 1; i < len(words); i++ {
		w := words[i]
		name, hasDash := strings.CutPrefix(w, "--")
		if !hasDash {
			name, hasDash = strings.CutPrefix(w, "-")
		}
		if !hasDash || w == "-" {
			if c.sub == "" {
				c.sub = w
				c.order = append(c.order, "|")
			} else {
				c.args = append(c.args, w)
			}
			continue
		}
		name, value, hasValue := strings.Cut(name, "=")
		if !hasValue && valueFlags[name] && i+1 < len(words) {
			i++
			value = words[i]
		}
		c.flags[name] = append(c.flags[name], value)
		c.order = append(c.order, name)
	}
	return c
}

// global reports whether flag name comes before the subcommand.
func (c command) global(name string) bool {
	i := slices.Index(c.order, name)
	return i >= 0 && i < slices.Index(c.order, "|")
}

// shellWords splits a shell command line into words: blanks separate,
// double and single quotes group (enough for the examples; no escapes).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '"' || r == '\''):
			quote, in = r, true
		case quote == 0 && (r == ' ' || r == '\t' || r == '\n'):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// strataCommands finds the strata command lines of a shell script: lines
// joined at trailing backslashes, a line whose first word is strata.
func strataCommands(script string) []command {
	var cmds []command
	joined := strings.ReplaceAll(script, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		words := shellWords(line)
		if len(words) > 0 && words[0] == "strata" {
			cmds = append(cmds, parseCommand(strings.Join(words, " "), words))
		}
	}
	return cmds
}

// cliFlags returns the long and short flag names strata's CLI defines: the
// string arguments of the flag set's Var/VarP calls in internal/cli.
func cliFlags(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../../internal/cli/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("strata's CLI sources not found: %v", err)
	}
	names := map[string]bool{"help": true, "h": true}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				for _, s := range flagNames(call) {
					names[s] = true
				}
			}
			return true
		})
	}
	return names
}

// flagNames returns the names a pflag definition call declares:
// x.FooVar(p, name, ...) and x.FooVarP(p, name, shorthand, ...).
func flagNames(call *ast.CallExpr) []string {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return nil
	}
	n := 0
	switch m := sel.Sel.Name; {
	case strings.HasSuffix(m, "VarP"):
		n = 2
	case strings.HasSuffix(m, "Var"):
		n = 1
	}
	var names []string
	for i := 1; i <= n && i < len(call.Args); i++ {
		if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil && s != "" {
				names = append(names, s)
			}
		}
	}
	return names
}

// checkFlagsExist fails the test for a flag strata does not define.
func checkFlagsExist(t *testing.T, where string, cmds []command) {
	t.Helper()
	known := cliFlags(t)
	for _, c := range cmds {
		for name := range c.flags {
			if !known[name] {
				t.Errorf("%s: strata has no flag --%s: %s", where, name, c.line)
			}
		}
	}
}

func TestCommandParser(t *testing.T) {
	cmds := strataCommands("echo x\nstrata --isolation=rootless build --progress plain \\\n  --cache-from \"type=registry,ref=$R\" -t 'a b' --push .\n")
	if len(cmds) != 1 {
		t.Fatalf("found %d commands, want 1", len(cmds))
	}
	c := cmds[0]
	if c.sub != "build" || !c.global("isolation") || c.global("push") || !slices.Equal(c.args, []string{"."}) {
		t.Errorf("parsed %+v", c)
	}
	if c.flags["cache-from"][0] != "type=registry,ref=$R" || c.flags["t"][0] != "a b" || c.flags["progress"][0] != "plain" {
		t.Errorf("flag values %v", c.flags)
	}
	known := cliFlags(t)
	for _, f := range []string{"cache-to", "cache-from", "output", "push", "tag", "t", "progress", "root"} {
		if !known[f] {
			t.Errorf("cliFlags missed --%s", f)
		}
	}
	for _, f := range []string{"no-such-flag", "auto", "gzip"} { // not flags: a default value is not a name
		if known[f] {
			t.Errorf("cliFlags knows --%s", f)
		}
	}
}
