package image

import (
	"testing"
	"time"
)

func TestParseEpoch(t *testing.T) {
	if e, err := ParseEpoch(""); e != nil || err != nil {
		t.Errorf(`ParseEpoch("") = %v, %v; want no epoch`, e, err)
	}
	e, err := ParseEpoch("1700000000")
	if err != nil || !e.Equal(time.Unix(1700000000, 0)) || e.Location() != time.UTC {
		t.Errorf("ParseEpoch(1700000000) = %v, %v", e, err)
	}
	for _, bad := range []string{"-1", "1.5", "soon", " 1", "99999999999999999999"} {
		_, err := ParseEpoch(bad)
		want := `SOURCE_DATE_EPOCH="` + bad + `": must be a number of seconds since 1970`
		if err == nil || err.Error() != want {
			t.Errorf("ParseEpoch(%q) err = %v, want %q", bad, err, want)
		}
	}
}
