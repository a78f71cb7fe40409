package chat

import (
	"strconv"
	"strings"
	"time"
)

// strftime formats t as Python's datetime.strftime does on Linux (glibc,
// C locale) for a naive datetime: %z and %Z are empty, as they are for the
// datetime.now() that transformers' strftime_now formats. Supports the glibc
// flags "-" (no padding), "_" (space padding), "0", "^" (upper case) and
// "#" (swap case), and a field width. Unknown directives are copied as-is.
func strftime(format string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		start := i
		i++
		var flag byte
		for i < len(format) && strings.IndexByte("-_0^#", format[i]) >= 0 {
			flag = format[i]
			i++
		}
		width := 0
		for i < len(format) && format[i] >= '0' && format[i] <= '9' {
			width = width*10 + int(format[i]-'0')
			i++
		}
		if i < len(format) && (format[i] == 'E' || format[i] == 'O') {
			i++
		}
		if i >= len(format) {
			b.WriteString(format[start:])
			break
		}
		s, numeric, ok := strftimeField(format[i], t)
		if !ok {
			b.WriteString(format[start : i+1])
			continue
		}
		b.WriteString(applyStrftimeFlag(s, numeric, flag, width))
	}
	return b.String()
}

// applyStrftimeFlag re-pads a field. numeric fields come zero- or
// space-padded to their natural width; pad counts the natural padding.
func applyStrftimeFlag(s string, numeric bool, flag byte, width int) string {
	switch flag {
	case '-':
		if numeric {
			s = strings.TrimLeft(s, "0 ")
			if s == "" {
				s = "0"
			}
		}
	case '_':
		if numeric {
			t := strings.TrimLeft(s, "0 ")
			if t == "" {
				t = "0"
			}
			s = strings.Repeat(" ", len(s)-len(t)) + t
		}
	case '0':
		if numeric {
			s = strings.ReplaceAll(s, " ", "0")
		}
	case '^':
		s = strings.ToUpper(s)
	case '#':
		if strings.ToUpper(s) == s {
			s = strings.ToLower(s)
		} else {
			s = strings.ToUpper(s)
		}
	}
	if len(s) < width {
		pad := " "
		if numeric && flag != '_' && flag != '-' {
			pad = "0"
		}
		s = strings.Repeat(pad, width-len(s)) + s
	}
	return s
}

func pad2(n int) string { return pad(n, 2, '0') }

func pad(n, width int, with byte) string {
	s := strconv.Itoa(n)
	for len(s) < width {
		s = string(with) + s
	}
	return s
}

// strftimeField returns one directive's text, whether it is numeric, and
// whether the directive is known.
func strftimeField(c byte, t time.Time) (string, bool, bool) {
	hour12 := t.Hour() % 12
	if hour12 == 0 {
		hour12 = 12
	}
	switch c {
	case 'a':
		return t.Weekday().String()[:3], false, true
	case 'A':
		return t.Weekday().String(), false, true
	case 'b', 'h':
		return t.Month().String()[:3], false, true
	case 'B':
		return t.Month().String(), false, true
	case 'c':
		return t.Format("Mon Jan _2 15:04:05 2006"), false, true
	case 'C':
		return pad2(t.Year() / 100), true, true
	case 'd':
		return pad2(t.Day()), true, true
	case 'D', 'x':
		return t.Format("01/02/06"), false, true
	case 'e':
		return pad(t.Day(), 2, ' '), true, true
	case 'f':
		return pad(t.Nanosecond()/1000, 6, '0'), true, true
	case 'F':
		return t.Format("2006-01-02"), false, true
	case 'g':
		y, _ := t.ISOWeek()
		return pad2(y % 100), true, true
	case 'G':
		y, _ := t.ISOWeek()
		return strconv.Itoa(y), true, true
	case 'H':
		return pad2(t.Hour()), true, true
	case 'I':
		return pad2(hour12), true, true
	case 'j':
		return pad(t.YearDay(), 3, '0'), true, true
	case 'k':
		return pad(t.Hour(), 2, ' '), true, true
	case 'l':
		return pad(hour12, 2, ' '), true, true
	case 'm':
		return pad2(int(t.Month())), true, true
	case 'M':
		return pad2(t.Minute()), true, true
	case 'n':
		return "\n", false, true
	case 'p':
		if t.Hour() < 12 {
			return "AM", false, true
		}
		return "PM", false, true
	case 'P':
		if t.Hour() < 12 {
			return "am", false, true
		}
		return "pm", false, true
	case 'r':
		return t.Format("03:04:05 PM"), false, true
	case 'R':
		return t.Format("15:04"), false, true
	case 's':
		return strconv.FormatInt(t.Unix(), 10), true, true
	case 'S':
		return pad2(t.Second()), true, true
	case 't':
		return "\t", false, true
	case 'T', 'X':
		return t.Format("15:04:05"), false, true
	case 'u':
		wd := int(t.Weekday())
		if wd == 0 {
			wd = 7
		}
		return strconv.Itoa(wd), true, true
	case 'U':
		// Week of the year, Sunday as the first day; days before the first Sunday are week 0.
		return pad2((t.YearDay() + 6 - int(t.Weekday())) / 7), true, true
	case 'V':
		_, w := t.ISOWeek()
		return pad2(w), true, true
	case 'w':
		return strconv.Itoa(int(t.Weekday())), true, true
	case 'W':
		// Monday as the first day.
		return pad2((t.YearDay() + 6 - (int(t.Weekday())+6)%7) / 7), true, true
	case 'y':
		return pad2(t.Year() % 100), true, true
	case 'Y':
		return strconv.Itoa(t.Year()), true, true
	case 'z', 'Z':
		return "", false, true
	case '%':
		return "%", false, true
	}
	return "", false, false
}
