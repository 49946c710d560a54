package inspect

import (
	"bytes"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestTemplate(t *testing.T) {
	info := Info{
		Id:     "sha256:abc",
		Size:   1982573,
		Os:     "linux",
		Config: &v1.Config{Env: []string{"PATH=/bin", "A=b<c>"}, Cmd: []string{"sh", "-c", "x"}, Labels: map[string]string{"org.example": "v1"}},
		Manifest: v1.Manifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json",
			Layers: []v1.Descriptor{{Size: 10}, {Size: 20}}},
	}
	cases := map[string]string{
		`{{.Config.Env}}`:                           `[PATH=/bin A=b<c>]`,
		`{{json .Config.Env}}`:                      `["PATH=/bin","A=b<c>"]`,
		`{{json .Config}}`:                          `{"Cmd":["sh","-c","x"],"Env":["PATH=/bin","A=b<c>"],"Labels":{"org.example":"v1"}}`,
		`{{join .Config.Cmd " "}}`:                  `sh -c x`,
		`{{upper .Os}} {{lower "ABC"}}`:             `LINUX abc`,
		`{{title "hello big-world"}}`:               `Hello Big-World`,
		`{{index (split "a:b:c" ":") 1}}`:           `b`,
		`{{index .Config.Labels "org.example"}}`:    `v1`,
		`{{len .Manifest.Layers}}`:                  `2`,
		`{{(index .Manifest.Layers 1).Size}}`:       `20`,
		`{{.Manifest.mediaType}} {{.Size}}`:         `application/vnd.oci.image.manifest.v1+json 1982573`, // JSON keys work too, numbers stay integers
		`{{range .Config.Env}}{{println .}}{{end}}`: "PATH=/bin\nA=b<c>\n",
		`{{pad .Os 1 2}}|{{truncate "abcdef" 3}}`:   ` linux  |abc`,
		`{{.Id}}\t{{.Os}}`:                          "sha256:abc\tlinux",
	}
	for format, want := range cases {
		tmpl, err := ParseTemplate(format)
		if err != nil {
			t.Errorf("%s: %v", format, err)
			continue
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, info); err != nil {
			t.Errorf("%s: %v", format, err)
			continue
		}
		if b.String() != want {
			t.Errorf("%s:\n got %q\nwant %q", format, b.String(), want)
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	if _, err := ParseTemplate("{{.Config"); err == nil || !strings.Contains(err.Error(), "invalid --format") {
		t.Errorf("unclosed action: %v", err)
	}
	tmpl, err := ParseTemplate("{{.NoSuchField}}")
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Execute(&bytes.Buffer{}, Info{}); err == nil || !strings.Contains(err.Error(), "NoSuchField") {
		t.Errorf("unknown field: want an error naming it, got %v", err)
	}
}

func TestTableTemplate(t *testing.T) {
	tmpl, err := ParseTemplate("table {{.A}}\\t{{.B}}")
	if err != nil {
		t.Fatal(err)
	}
	if !tmpl.Table {
		t.Fatal("Table not set")
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, struct{ A, B string }{"x", "y"}); err != nil || b.String() != "x\ty" {
		t.Errorf("got %q, %v", b.String(), err)
	}
}
