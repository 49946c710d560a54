package builder

import (
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/util/suggest"

	"github.com/strata-build/strata/internal/dockerfile"
)

// BuildKit's build checks that need the dispatch state (the rest run in the
// parser). Messages come from BuildKit's own rule definitions.

var (
	secretKeyRe   = regexp.MustCompile(`(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)`)
	secretAllowRe = regexp.MustCompile(`(?i)(?:_|^)(?:public|file|version)(?:_|$)`)
)

// suggestName returns the variable among keys that BuildKit's UndefinedVar
// check names for v ("did you mean"), or "": util/suggest's closest match,
// case-sensitive as on Linux.
func suggestName(v string, keys []string) string {
	match, _ := suggest.Search(v, keys, true)
	return match
}

// check runs the per-instruction build checks.
func (sb *stageBuilder) check(c instructions.Command) {
	lint := sb.df.Lint
	switch c := c.(type) {
	case *instructions.CmdCommand:
		sb.usedOnce(c, &sb.seenCmd)
		if c.PrependShell && len(sb.img.cfg.Config.Shell) == 0 {
			lint.Run(&linter.RuleJSONArgsRecommended, c.Location(), linter.RuleJSONArgsRecommended.Format(c.Name()))
		}
	case *instructions.EntrypointCommand:
		sb.usedOnce(c, &sb.seenEntrypoint)
		if c.PrependShell && len(sb.img.cfg.Config.Shell) == 0 {
			lint.Run(&linter.RuleJSONArgsRecommended, c.Location(), linter.RuleJSONArgsRecommended.Format(c.Name()))
		}
	case *instructions.HealthCheckCommand:
		sb.usedOnce(c, &sb.seenHealthcheck)
	case *instructions.WorkdirCommand:
		if !sb.workdirSet && !strings.HasPrefix(c.Path, "/") {
			lint.Run(&linter.RuleWorkdirRelativePath, c.Location(), linter.RuleWorkdirRelativePath.Format(c.Path))
		}
		sb.workdirSet = true
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			sb.secretKey("ENV", kv.Key, c)
			if kv.NoDelim {
				lint.Run(&linter.RuleLegacyKeyValueFormat, c.Location(), linter.RuleLegacyKeyValueFormat.Format(c.Name()))
			}
		}
	case *instructions.LabelCommand:
		for _, kv := range c.Labels {
			if kv.NoDelim {
				lint.Run(&linter.RuleLegacyKeyValueFormat, c.Location(), linter.RuleLegacyKeyValueFormat.Format(c.Name()))
			}
		}
	case *instructions.ArgCommand:
		for _, kv := range c.Args {
			sb.secretKey("ARG", kv.Key, c)
		}
	case *instructions.ExposeCommand:
		for _, p := range c.Ports {
			spec := p
			if i := strings.LastIndex(spec, ":"); i >= 0 {
				lint.Run(&linter.RuleExposeInvalidFormat, c.Location(), linter.RuleExposeInvalidFormat.Format(p))
				spec = spec[i+1:]
			}
			if _, proto, ok := strings.Cut(spec, "/"); ok && proto != strings.ToLower(proto) {
				lint.Run(&linter.RuleExposeProtoCasing, c.Location(), linter.RuleExposeProtoCasing.Format(p))
			}
		}
	}
}

func (sb *stageBuilder) secretKey(inst, key string, c instructions.Command) {
	if secretKeyRe.MatchString(key) && !secretAllowRe.MatchString(key) {
		sb.df.Lint.Run(&linter.RuleSecretsUsedInArgOrEnv, c.Location(), linter.RuleSecretsUsedInArgOrEnv.Format(inst, key))
	}
}

// usedOnce reports MultipleInstructionsDisallowed for a second CMD,
// ENTRYPOINT or HEALTHCHECK in one stage (at the earlier one, as BuildKit).
func (sb *stageBuilder) usedOnce(c instructions.Command, prev *instructions.Command) {
	if *prev != nil {
		sb.df.Lint.Run(&linter.RuleMultipleInstructionsDisallowed, (*prev).Location(), linter.RuleMultipleInstructionsDisallowed.Format(c.Name()))
	}
	*prev = c
}

// checkStages runs the checks that look at the Dockerfile as a whole:
// instruction casing, stage names, and the variables and platforms of FROM.
func checkStages(df *dockerfile.Dockerfile, globals mapGetter, defaults mapGetter) {
	lint := df.Lint
	var lower, upper int
	count := func(s string) {
		if s == strings.ToLower(s) {
			lower++
		} else if s == strings.ToUpper(s) {
			upper++
		}
	}
	for _, st := range df.Stages {
		count(st.OrigCmd)
		for _, c := range st.Commands {
			count(c.Name())
		}
	}
	majorityLower := lower > upper
	caseMatch := func(name string, loc []parser.Range) {
		want := ""
		if majorityLower && strings.ToLower(name) != name {
			want = "lowercase"
		} else if !majorityLower && strings.ToUpper(name) != name {
			want = "uppercase"
		}
		if want != "" {
			lint.Run(&linter.RuleConsistentInstructionCasing, loc, linter.RuleConsistentInstructionCasing.Format(name, want))
		}
	}
	names := map[string]bool{}
	lex := df.Lexer()
	for _, st := range df.Stages {
		caseMatch(st.OrigCmd, st.Location)
		for _, c := range st.Commands {
			caseMatch(c.Name(), c.Location())
		}
		if st.Name != "" {
			if st.Name == "scratch" || st.Name == "context" {
				lint.Run(&linter.RuleReservedStageName, st.Location, linter.RuleReservedStageName.Format(st.Name))
			}
			if names[st.Name] {
				lint.Run(&linter.RuleDuplicateStageName, st.Location, linter.RuleDuplicateStageName.Format(st.Name))
			}
			names[st.Name] = true
		}
		if res, err := lex.ProcessWordWithMatches(st.BaseName, globals); err == nil {
			for v := range res.Unmatched {
				if _, ok := globals[v]; ok {
					continue
				}
				lint.Run(&linter.RuleUndefinedArgInFrom, st.Location, linter.RuleUndefinedArgInFrom.Format(v, ""))
			}
		}
		if res, err := lex.ProcessWordWithMatches(st.BaseName, defaults); err == nil && !strings.EqualFold(res.Result, "scratch") && !names[strings.ToLower(res.Result)] {
			if _, err := name.ParseReference(res.Result); err != nil {
				lint.Run(&linter.RuleInvalidDefaultArgInFrom, st.Location, linter.RuleInvalidDefaultArgInFrom.Format(st.BaseName))
			}
		}
		if st.Platform != "" {
			res, err := lex.ProcessWordWithMatches(st.Platform, globals)
			if err != nil {
				continue
			}
			if len(res.Matched) == 1 && len(res.Unmatched) == 0 {
				if _, ok := res.Matched["TARGETPLATFORM"]; ok && res.Result == globals["TARGETPLATFORM"] {
					lint.Run(&linter.RuleRedundantTargetPlatform, st.Location, linter.RuleRedundantTargetPlatform.Format(st.Platform))
				}
			}
			if len(res.Matched) == 0 && len(res.Unmatched) == 0 {
				if p, err := v1.ParsePlatform(res.Result); err == nil && !strings.Contains(st.Name, p.OS) && !strings.Contains(st.Name, p.Architecture) {
					lint.Run(&linter.RuleFromPlatformFlagConstDisallowed, st.Location, linter.RuleFromPlatformFlagConstDisallowed.Format(res.Result))
				}
			}
		}
	}
}
