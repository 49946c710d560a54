package image

import (
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestFillHistoryTimes(t *testing.T) {
	at := func(h int) v1.Time { return v1.Time{Time: time.Date(2026, 1, 1, h, 0, 0, 0, time.UTC)} }
	var none v1.Time
	tests := []struct {
		name     string
		in, want []v1.Time
	}{
		{"leading metadata takes the first new layer's time",
			[]v1.Time{at(1), at(2), none, none, at(5), none, at(7)},
			[]v1.Time{at(1), at(2), at(5), at(5), at(5), at(5), at(7)}},
		{"later metadata takes the previous entry's time, even an older one",
			[]v1.Time{at(1), none, at(9), at(3), none, at(4), none},
			[]v1.Time{at(1), at(9), at(9), at(3), at(3), at(4), at(4)}},
		{"no new layer: the base's last time",
			[]v1.Time{at(1), at(2), none, none},
			[]v1.Time{at(1), at(2), at(2), at(2)}},
		{"nothing has a time", []v1.Time{none, none}, []v1.Time{none, none}},
		{"FROM scratch, metadata first", []v1.Time{none, at(3), none}, []v1.Time{at(3), at(3), at(3)}},
	}
	for _, tt := range tests {
		h := make([]v1.History, len(tt.in))
		for i, c := range tt.in {
			h[i].Created = c
		}
		FillHistoryTimes(h)
		for i := range h {
			if !h[i].Created.Equal(tt.want[i].Time) {
				t.Errorf("%s: entry %d = %v, want %v", tt.name, i, h[i].Created.Time, tt.want[i].Time)
			}
		}
	}
	if got := LastHistoryTime([]v1.History{{Created: at(4)}, {Created: at(2)}, {}}); !got.Equal(at(2).Time) {
		t.Errorf("LastHistoryTime = %v, want %v", got.Time, at(2).Time)
	}
}
