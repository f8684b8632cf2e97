package trace

import (
	"math"
	"strconv"
)

// parseNanos converts a JSON number literal holding microseconds (as Kineto
// writes ts and dur) into integer nanoseconds without going through float64,
// which loses the nanosecond digits of absolute 16-digit microsecond values.
// It accepts a sign, any number of fraction digits (rounded half away from
// zero past the third) and an exponent.
func parseNanos(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	// Fast path: [-]digits[.d{1,3}] with at most 15 integer digits, which is
	// every value Kineto writes; overflow is impossible there.
	if v, ok := parseNanosFast(b); ok {
		return v, true
	}
	return parseNanosSlow(b)
}

func parseNanosFast(b []byte) (int64, bool) {
	i := 0
	neg := false
	if b[0] == '-' {
		neg = true
		i++
	}
	var v int64
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	nint := i - start
	if nint == 0 || nint > 15 {
		return 0, false
	}
	v *= 1000
	if i < len(b) {
		if b[i] != '.' {
			return 0, false
		}
		i++
		scale := int64(100)
		nf := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if nf == 3 {
				return 0, false
			}
			v += int64(b[i]-'0') * scale
			scale /= 10
			nf++
			i++
		}
		if nf == 0 || i != len(b) {
			return 0, false
		}
	}
	if neg {
		v = -v
	}
	return v, true
}

// parseNanosSlow handles the general decimal grammar: digits are gathered
// into an integer mantissa with a power-of-ten exponent, then scaled to ns.
func parseNanosSlow(b []byte) (int64, bool) {
	i := 0
	neg := false
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		neg = b[i] == '-'
		i++
	}
	var mant uint64
	exp := 0    // value = mant * 10^exp (in us)
	digits := 0 // significant digits kept in mant
	round := -1 // first dropped digit, for rounding
	sawDigit := false
	sawDot := false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			sawDigit = true
			if mant == 0 && c == '0' {
				if sawDot {
					exp--
				}
				continue
			}
			if digits < 19 {
				mant = mant*10 + uint64(c-'0')
				digits++
				if sawDot {
					exp--
				}
			} else {
				if round < 0 {
					round = int(c - '0')
				}
				if !sawDot {
					exp++
				}
			}
		case c == '.' && !sawDot:
			sawDot = true
		case c == 'e' || c == 'E':
			if !sawDigit {
				return 0, false
			}
			e, err := strconv.Atoi(string(b[i+1:]))
			if err != nil || e > 40 || e < -40 {
				return 0, false
			}
			exp += e
			i = len(b)
		default:
			return 0, false
		}
	}
	if !sawDigit {
		return 0, false
	}
	if round >= 5 {
		mant++
	}
	exp += 3 // us -> ns
	for exp > 0 {
		if mant > math.MaxUint64/10 {
			return 0, false
		}
		mant *= 10
		exp--
	}
	for exp < 0 {
		if exp == -1 {
			mant = (mant + 5) / 10
		} else {
			mant /= 10
		}
		exp++
	}
	if mant > math.MaxInt64 {
		return 0, false
	}
	v := int64(mant)
	if neg {
		v = -v
	}
	return v, true
}

// parseUint parses a non-negative JSON integer (possibly written with a
// ".0" fraction, as Python float output does) into a uint64 exactly.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		if len(b) > 20 {
			return parseUintFrac(b)
		}
		return 0, false
	}
	var v uint64
	for i, c := range b {
		if c < '0' || c > '9' {
			if c == '.' || c == 'e' || c == 'E' {
				return parseUintFrac(b)
			}
			return 0, false
		}
		d := uint64(c - '0')
		if i >= 19 && (v > (math.MaxUint64-d)/10) {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseUintFrac accepts integers written as floats ("12.0", "1e3") when the
// value is integral.
func parseUintFrac(b []byte) (uint64, bool) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f > 1<<53 {
		return 0, false
	}
	return uint64(f), true
}

// parseInt parses a JSON integer (optionally negative or written as an
// integral float) into an int64.
func parseInt(b []byte) (int64, bool) {
	if len(b) > 0 && b[0] == '-' {
		u, ok := parseUint(b[1:])
		if !ok || u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	u, ok := parseUint(b)
	if !ok || u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// appendMicros formats integer nanoseconds as microseconds with a three
// digit fraction, the form Kineto writes, so a round trip is exact.
func appendMicros(dst []byte, ns int64) []byte {
	if ns < 0 {
		dst = append(dst, '-')
		ns = -ns
	}
	dst = strconv.AppendInt(dst, ns/1000, 10)
	f := ns % 1000
	dst = append(dst, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
	return dst
}
