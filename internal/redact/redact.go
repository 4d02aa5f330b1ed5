// Package redact makes dbkit's values print as short descriptions that hold
// no secret: a value holding a password, a key or a connection implements
// fmt.Formatter with [Format], so that no verb or flag of fmt walks its
// fields.
package redact

import (
	"fmt"
	"strconv"
)

// Describer is a value with a safe description, in plain and Go-syntax
// form.
type Describer interface {
	String() string
	GoString() string
}

// Format writes v as fmt's verb asks, from its safe descriptions only: its
// GoString for %#v, its String quoted for %q, its String for every other
// verb and flag (%v, %+v, %s, %d, %x...), so that none of them prints a
// field.
func Format(f fmt.State, verb rune, v Describer) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, v.GoString())
	case verb == 'q':
		fmt.Fprint(f, strconv.Quote(v.String()))
	default:
		fmt.Fprint(f, v.String())
	}
}
