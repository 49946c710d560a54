package image

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// EpochEnv is the variable reproducible builds take their timestamp from
// (https://reproducible-builds.org/specs/source-date-epoch/).
const EpochEnv = "SOURCE_DATE_EPOCH"

// ParseEpoch parses a SOURCE_DATE_EPOCH value: whole seconds since
// 1970-01-01 UTC, not negative. "" is no epoch (nil, no error).
func ParseEpoch(v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s=%q: must be a number of seconds since 1970", EpochEnv, v)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

// EpochFromEnv is ParseEpoch of $SOURCE_DATE_EPOCH.
func EpochFromEnv() (*time.Time, error) { return ParseEpoch(os.Getenv(EpochEnv)) }
