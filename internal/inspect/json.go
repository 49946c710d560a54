package inspect

import (
	"encoding/json"
	"io"
)

// WriteJSON writes v as JSON indented with indent, without escaping <, >
// and & (image text is shown as it is, as docker does).
func WriteJSON(w io.Writer, v any, indent string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", indent)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteInfos prints the result of `strata inspect`: a JSON array (docker's
// four-space indent), or tmpl run once per image, one line each.
func WriteInfos(w io.Writer, infos []Info, tmpl *Template) error {
	if tmpl == nil {
		return WriteJSON(w, infos, "    ")
	}
	return executeLines(w, tmpl, infos)
}
