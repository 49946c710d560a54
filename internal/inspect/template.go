package inspect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"
)

// Funcs are the template functions docker's --format offers: json, join,
// split, upper, lower, title, pad, truncate and println (index, len, printf
// and the rest are Go's own).
func Funcs() template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(v); err != nil {
				return "", err
			}
			return strings.TrimSpace(b.String()), nil
		},
		"split":    strings.Split,
		"join":     strings.Join,
		"title":    title,
		"lower":    strings.ToLower,
		"upper":    strings.ToUpper,
		"pad":      pad,
		"truncate": truncate,
		"println":  fmt.Sprintln,
	}
}

// title upper-cases the first letter of every word, as docker's title does.
func title(s string) string {
	prev := ' '
	return strings.Map(func(r rune) rune {
		defer func() { prev = r }()
		if unicode.IsSpace(prev) || unicode.IsPunct(prev) && prev != '\'' {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}

func pad(s string, before, after int) string {
	return strings.Repeat(" ", max(before, 0)) + s + strings.Repeat(" ", max(after, 0))
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:max(n, 0)])
}

// Template is a parsed --format template.
type Template struct {
	t    *template.Template
	tMap *template.Template // the same, for the JSON form: missing keys are errors
	// Table is set when the format began with "table": the caller prints a
	// header row and aligns the columns.
	Table bool
}

// ParseTemplate parses a docker-style --format value. A leading "table"
// sets Table; "\t" and "\n" written as escapes become tabs and newlines.
func ParseTemplate(format string) (*Template, error) {
	tt := &Template{}
	if rest, ok := strings.CutPrefix(format, "table"); ok {
		tt.Table = true
		format = strings.TrimLeft(rest, " ")
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	t, err := template.New("format").Funcs(Funcs()).Parse(format)
	if err != nil {
		return nil, fmt.Errorf("invalid --format template: %w", err)
	}
	tt.t = t
	tt.tMap = template.Must(template.New("format").Funcs(Funcs()).Option("missingkey=error").Parse(format))
	return tt, nil
}

// Execute runs the template on v. When that fails on a field the typed value
// does not have, it runs again on v's JSON form decoded into maps (as docker
// inspect does), so both {{.Config.Env}} and the JSON keys work.
func (t *Template) Execute(w io.Writer, v any) error {
	var b bytes.Buffer
	err := t.t.Execute(&b, v)
	if err != nil {
		raw, jerr := json.Marshal(v)
		if jerr != nil {
			return fmt.Errorf("--format: %w", err)
		}
		var m any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // sizes print as 1982573, not 1.982573e+06
		if jerr := dec.Decode(&m); jerr != nil {
			return fmt.Errorf("--format: %w", err)
		}
		b.Reset()
		if err2 := t.tMap.Execute(&b, m); err2 != nil {
			return fmt.Errorf("--format: %w", err)
		}
	}
	_, err = w.Write(b.Bytes())
	return err
}
