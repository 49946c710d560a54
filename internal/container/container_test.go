package container

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseVolume(t *testing.T) {
	host := t.TempDir()
	for v, want := range map[string][]string{
		host + ":/data":                  {host, "/data", "rbind rw rprivate"},
		host + "/:/data/../mnt/":         {host, "/mnt", "rbind rw rprivate"},
		host + ":/data:ro":               {host, "/data", "rbind ro rprivate"},
		host + ":/data:rw,rshared":       {host, "/data", "rbind rw rshared"},
		host + ":/data:Z,ro":             {host, "/data", "rbind ro rprivate"},
		filepath.Join(host, ".") + ":/x": {host, "/x", "rbind rw rprivate"},
	} {
		m, err := ParseVolume(v)
		if err != nil {
			t.Errorf("ParseVolume(%q): %v", v, err)
			continue
		}
		got := []string{m.Source, m.Destination, strings.Join(m.Options, " ")}
		if !reflect.DeepEqual(got, want) || m.Type != "bind" {
			t.Errorf("ParseVolume(%q) = %v %s, want %v bind", v, got, m.Type, want)
		}
	}
	for v, msg := range map[string]string{
		"/data":                           "want HOST-DIR:CONTAINER-DIR",
		host + ":/a:ro:x":                 "want HOST-DIR:CONTAINER-DIR",
		"vol:/data":                       "not absolute",
		"./rel:/data":                     "not absolute",
		filepath.Join(host, "no") + ":/d": "no such file",
		host + ":data":                    "must be absolute",
		host + ":/":                       "not /",
		host + ":/data:rx":                `unknown option "rx"`,
	} {
		if _, err := ParseVolume(v); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseVolume(%q) = %v, want an error with %q", v, err, msg)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, n := range []string{"web", "my_app.1", "A-b", "0x"} {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", "a", "-web", "_web", "we b", "we/b", "web:1", strings.Repeat("é", 3)} {
		if err := CheckName(n); err == nil {
			t.Errorf("CheckName(%q) = nil", n)
		}
	}
	if err := CheckNetwork("bridge"); err == nil {
		t.Error("CheckNetwork(bridge) = nil")
	}
	for _, n := range []string{"", "host", "none"} {
		if err := CheckNetwork(n); err != nil {
			t.Errorf("CheckNetwork(%q) = %v", n, err)
		}
	}
}
