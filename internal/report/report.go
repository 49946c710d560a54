// Package report writes the build report: one self-contained HTML page
// (no external resources) with a timeline of every step of every stage
// (parallel stages side by side), cache hits and misses with the reason,
// each layer's size, and the final image's config.
package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"os"
	"sort"
	"time"

	"github.com/strata-build/strata/internal/human"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
)

// Data is what a report shows.
type Data struct {
	Title    string
	Started  time.Time
	Finished time.Time
	Events   []progress.Event
	Image    *image.Image // nil when the build failed
	Error    string
	// Isolation says how the build was isolated ("rootless (user
	// namespace, …)", see strata version).
	Isolation string
}

// Step is one row of the timeline.
type Step struct {
	ID       int
	Stage    string
	Name     string
	Status   string // done, cached, error, running
	Start    float64
	Duration float64
	Reason   string
	Error    string
	Emulated string // the platform it ran emulated for
	Output   []string
	Left     float64 // percent of the timeline
	Width    float64
}

// Layer is a row of the layer table.
type Layer struct {
	Digest    string
	Size      string // of the compressed blob, as the registry stores it
	CreatedBy string
}

type page struct {
	Title     string
	Started   string
	Total     string
	Error     string
	Lanes     []lane
	Steps     []Step
	Layers    []Layer
	Config    string
	Messages  []string
	Cached    int
	Ran       int
	Emulated  int     // steps that ran emulated
	EmuTime   float64 // their time, seconds
	ImageID   string
	Isolation string
}

type lane struct {
	Stage string
	Steps []Step
}

// WriteFile writes the report of d to the file path.
func WriteFile(path string, d Data) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, d); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Write renders the report.
func Write(w io.Writer, d Data) error {
	p := page{Title: d.Title, Started: d.Started.Format(time.RFC3339), Error: d.Error, Isolation: d.Isolation}
	total := d.Finished.Sub(d.Started).Seconds()
	if total <= 0 {
		total = 0.001
	}
	p.Total = fmt.Sprintf("%.2fs", total)
	byID := map[int]*Step{}
	var order []int
	for _, e := range d.Events {
		switch e.Type {
		case progress.EventStart:
			s := &Step{ID: e.Step, Stage: e.Stage, Name: e.Name, Status: "running", Start: e.Time.Sub(d.Started).Seconds()}
			s.Duration = d.Finished.Sub(e.Time).Seconds()
			byID[e.Step] = s
			order = append(order, e.Step)
		case progress.EventLog:
			if s := byID[e.Step]; s != nil {
				s.Output = append(s.Output, e.Line)
				if len(s.Output) > 200 {
					s.Output = s.Output[len(s.Output)-200:]
				}
			}
		case progress.EventDone, progress.EventCached, progress.EventError:
			if s := byID[e.Step]; s != nil {
				s.Status = string(e.Type)
				s.Duration = e.Duration
				s.Reason = e.Reason
				s.Error = e.Error
				s.Emulated = e.Emulated
			}
		case progress.EventMessage:
			p.Messages = append(p.Messages, e.Line)
		}
	}
	lanes := map[string]*lane{}
	var laneOrder []string
	for _, id := range order {
		s := byID[id]
		s.Left = 100 * s.Start / total
		s.Width = max(100*s.Duration/total, 0.4)
		if s.Left+s.Width > 100 {
			s.Width = max(100-s.Left, 0.4)
		}
		switch s.Status {
		case "cached":
			p.Cached++
		case "done":
			p.Ran++
		}
		if s.Emulated != "" {
			p.Emulated++
			p.EmuTime += s.Duration
		}
		p.Steps = append(p.Steps, *s)
		name := s.Stage
		if name == "" {
			name = "(other)"
		}
		if lanes[name] == nil {
			lanes[name] = &lane{Stage: name}
			laneOrder = append(laneOrder, name)
		}
		lanes[name].Steps = append(lanes[name].Steps, *s)
	}
	for _, n := range laneOrder {
		p.Lanes = append(p.Lanes, *lanes[n])
	}
	sort.SliceStable(p.Steps, func(i, j int) bool { return p.Steps[i].Start < p.Steps[j].Start })
	if d.Image != nil {
		p.imageSection(d.Image)
	}
	return tmpl.Execute(w, p)
}

// imageSection fills the page's image ID, layers (with the steps that made
// them) and config.
func (p *page) imageSection(img *image.Image) {
	p.ImageID = img.Manifest.Config.Digest.String()
	li := 0
	for _, h := range img.Config.History {
		if h.EmptyLayer {
			continue
		}
		if li < len(img.Layers) {
			l := img.Layers[li]
			p.Layers = append(p.Layers, Layer{Digest: l.Digest.String(), Size: human.Size(l.Size), CreatedBy: h.CreatedBy})
		}
		li++
	}
	cfg, _ := json.MarshalIndent(img.Config.Config, "", "  ")
	p.Config = string(cfg)
}

var tmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":  func(f float64) string { return fmt.Sprintf("%.3f%%", f) },
	"secs": func(f float64) string { return fmt.Sprintf("%.2fs", f) },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>strata build report: {{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
.summary span{margin-right:18px}
.err{background:#fee;border:1px solid #c33;padding:8px;white-space:pre-wrap}
.timeline{border:1px solid #ccc;padding:6px}
.lane{display:flex;align-items:center;margin:4px 0}
.lane .label{width:140px;flex:none;font-weight:600;overflow:hidden;text-overflow:ellipsis}
.lane .track{position:relative;flex:1;height:22px;background:#f6f6f6}
.bar{position:absolute;top:2px;height:18px;border-radius:3px;cursor:pointer;min-width:3px}
.bar.done{background:#4a7fd6}.bar.cached{background:#8fc98f}.bar.error{background:#d64a4a}.bar.running{background:#d6b64a}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
td.num{text-align:right;white-space:nowrap} code,pre{font:12px/1.4 ui-monospace,monospace}
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:400px}
tr.sel{background:#fff7d6}
</style></head><body>
<h1>strata build report: {{.Title}}</h1>
<p class="summary"><span>started {{.Started}}</span><span>total <b>{{.Total}}</b></span><span id="count-steps">{{len .Steps}} steps</span><span>{{.Ran}} ran</span><span>{{.Cached}} cached</span>{{if .Emulated}}<span id="emulated">{{.Emulated}} emulated ({{secs .EmuTime}})</span>{{end}}{{if .ImageID}}<span>image <code>{{.ImageID}}</code></span>{{end}}{{if .Isolation}}<span id="isolation">isolation {{.Isolation}}</span>{{end}}</p>
{{if .Error}}<div class="err" id="build-error">{{.Error}}</div>{{end}}
<h2>Timeline</h2>
<div class="timeline" id="timeline">
{{range .Lanes}}<div class="lane"><div class="label" title="{{.Stage}}">{{.Stage}}</div><div class="track">
{{range .Steps}}<div class="bar {{.Status}}" data-step="{{.ID}}" style="left:{{pct .Left}};width:{{pct .Width}}" title="#{{.ID}} {{.Name}} ({{.Status}}, {{secs .Duration}})"></div>
{{end}}</div></div>
{{end}}</div>
<h2>Steps</h2>
<table id="steps"><thead><tr><th>#</th><th>stage</th><th>step</th><th>status</th><th>start</th><th>duration</th><th>cache</th></tr></thead><tbody>
{{range .Steps}}<tr id="step-{{.ID}}" class="step"><td>{{.ID}}</td><td>{{.Stage}}</td><td><code>{{.Name}}</code>{{if .Output}}<details><summary>output ({{len .Output}} lines)</summary><pre>{{range .Output}}{{.}}
{{end}}</pre></details>{{end}}{{if .Error}}<div class="err">{{.Error}}</div>{{end}}</td><td>{{.Status}}{{if .Emulated}} <span class="emu">emulated {{.Emulated}}</span>{{end}}</td><td class="num">{{secs .Start}}</td><td class="num">{{secs .Duration}}</td><td>{{if eq .Status "cached"}}hit{{else if .Reason}}miss: {{.Reason}}{{end}}</td></tr>
{{end}}</tbody></table>
{{if .Layers}}<h2>Layers</h2>
<table id="layers"><thead><tr><th>digest</th><th>compressed size</th><th>created by</th></tr></thead><tbody>
{{range .Layers}}<tr><td><code>{{.Digest}}</code></td><td class="num">{{.Size}}</td><td><code>{{.CreatedBy}}</code></td></tr>
{{end}}</tbody></table>{{end}}
{{if .Config}}<h2>Image config</h2><pre id="config">{{.Config}}</pre>{{end}}
{{if .Messages}}<h2>Messages</h2><pre>{{range .Messages}}{{.}}
{{end}}</pre>{{end}}
<script>
var bars = document.querySelectorAll('.bar');
bars.forEach(function (b) {
  b.addEventListener('click', function () {
    document.querySelectorAll('tr.sel').forEach(function (r) { r.classList.remove('sel'); });
    var row = document.getElementById('step-' + b.dataset.step);
    if (row) { row.classList.add('sel'); row.scrollIntoView({block: 'center'}); }
  });
});
document.body.dataset.bars = String(bars.length);
document.body.dataset.ready = '1';
</script>
</body></html>
`
