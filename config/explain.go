package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// didYouMean returns " (did you mean X?)" for the candidate closest to s,
// by edit distance, when it is close enough to be a typo: a few edits,
// fewer than a third of s. A candidate whose last dotted part equals s's
// (a key put in the wrong section) is suggested too. Else "".
func didYouMean(s string, candidates []string) string {
	best, bestD := "", math.MaxInt
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	if best != "" && bestD <= max(1, min(3, len(s)/3)) {
		return " (did you mean " + best + "?)"
	}
	leaf := s[strings.LastIndex(s, ".")+1:]
	var same []string
	for _, c := range candidates {
		if c[strings.LastIndex(c, ".")+1:] == leaf {
			same = append(same, c)
		}
	}
	if len(same) > 0 {
		slices.Sort(same)
		return " (did you mean " + strings.Join(same, " or ") + "?)"
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// valueError is a value that is not of its key's form; the decoder adds
// the key. single marks a collection given for a single value: the key's
// default, if any, is added as an example.
type valueError struct {
	msg    string
	single bool
}

func (e *valueError) Error() string { return e.msg }

var durationType = reflect.TypeOf(time.Duration(0))

// decodeValues is the decode hook of Load: it converts values from the
// file (YAML types), the environment and flags (strings) to the Config's
// types, and refuses a value not of its key's form with an error saying
// what form is expected, e.g. "\"30 seconds\" is not a duration; write it
// like 30s, 5m or 1h30m".
func decodeValues(from, to reflect.Value) (any, error) {
	in := from.Interface()
	if to.Type() == durationType {
		return toDuration(in)
	}
	switch to.Kind() {
	case reflect.Int:
		return toInt(in)
	case reflect.Bool:
		return toBool(in)
	case reflect.String:
		if isCollection(in) {
			return nil, &valueError{msg: describe(in) + " is not a single value; write one", single: true}
		}
	case reflect.Slice:
		if to.Type().Elem().Kind() == reflect.String {
			return toList(in)
		}
	}
	return in, nil
}

func toDuration(in any) (any, error) {
	const form = "write it like 30s, 5m or 1h30m"
	switch v := in.(type) {
	case time.Duration:
		return v, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return nil, &valueError{msg: strconv.Quote(v) + " is not a duration; " + form}
		}
		return d, nil
	case int, int64, uint64, float64:
		if reflect.ValueOf(v).IsZero() {
			return time.Duration(0), nil
		}
		return nil, &valueError{msg: fmt.Sprint(v) + " is not a duration: it has no unit; " + form}
	}
	return nil, &valueError{msg: describe(in) + " is not a duration; " + form}
}

func toInt(in any) (any, error) {
	const form = "write a whole number such as 0, 4 or 1000000, without units"
	switch v := in.(type) {
	case int:
		return v, nil
	case int64:
		if v >= math.MinInt && v <= math.MaxInt {
			return int(v), nil
		}
	case uint64:
		if v <= math.MaxInt {
			return int(v), nil
		}
	case float64:
		if v == math.Trunc(v) && v >= math.MinInt && v <= math.MaxInt {
			return int(v), nil
		}
		return nil, &valueError{msg: strconv.FormatFloat(v, 'g', -1, 64) + " is not a whole number; " + form}
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return nil, &valueError{msg: strconv.Quote(v) + " is not a whole number; " + form}
		}
		return n, nil
	}
	return nil, &valueError{msg: describe(in) + " is not a whole number; " + form}
}

func toBool(in any) (any, error) {
	const form = "write true or false"
	switch v := in.(type) {
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return nil, &valueError{msg: strconv.Quote(v) + " is not true or false; " + form}
		}
		return b, nil
	case int:
		if v == 0 || v == 1 {
			return v == 1, nil
		}
	}
	return nil, &valueError{msg: describe(in) + " is not true or false; " + form}
}

// toList takes a YAML list as is (its items are decoded one by one), and a
// string from the environment or a flag as a comma-separated list.
func toList(in any) (any, error) {
	switch v := in.(type) {
	case string:
		if v == "" {
			return []string{}, nil
		}
		return strings.Split(v, ","), nil
	case map[string]any:
		return nil, &valueError{msg: describe(in) + " is not a list; write [a, b], or one item a line starting with \"- \""}
	}
	return in, nil
}

func isCollection(in any) bool {
	switch reflect.ValueOf(in).Kind() {
	case reflect.Map, reflect.Slice, reflect.Array:
		return true
	}
	return false
}

// describe shows a value in an error: strings quoted, collections named.
func describe(in any) string {
	switch v := in.(type) {
	case string:
		return strconv.Quote(v)
	case nil:
		return "an empty value"
	}
	switch reflect.ValueOf(in).Kind() {
	case reflect.Map:
		return "a map of keys"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return fmt.Sprint(in)
}

// itemRE matches a list item's name as the decoder gives it: key[3].
var itemRE = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

// decodeErrors rewrites the decoder's error as one line per bad value,
// "key: what is wrong; how to write it", dropping the decoder's own
// wording where it can.
func decodeErrors(err error) error {
	defaults := flatten(Default())
	var lines []string
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case *mapstructure.DecodeError:
			inner := e.Unwrap()
			switch inner.(type) {
			case interface{ Unwrap() []error }, *mapstructure.DecodeError:
				walk(inner)
				return
			}
			key := e.Name()
			if m := itemRE.FindStringSubmatch(key); m != nil {
				i, _ := strconv.Atoi(m[2])
				key = fmt.Sprintf("%s (item %d)", m[1], i+1)
			}
			var ve *valueError
			if errors.As(inner, &ve) {
				msg := ve.msg
				if d, ok := defaults[e.Name()].(string); ok && ve.single && d != "" {
					msg += ", like " + d
				}
				lines = append(lines, key+": "+msg)
				return
			}
			lines = append(lines, key+": "+inner.Error())
		default:
			if u := errors.Unwrap(err); u != nil {
				walk(u)
				return
			}
			lines = append(lines, err.Error())
		}
	}
	walk(err)
	if len(lines) == 0 {
		return err
	}
	slices.Sort(lines)
	return errors.New(strings.Join(lines, "\n"))
}

// listed prefixes err with what, on one line for one error and one line
// each, indented, for several.
func listed(what string, err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "\n") {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s:\n  %s", what, strings.ReplaceAll(msg, "\n", "\n  "))
}
