package testutil

import (
	"errors"

	"github.com/pion/stun/v3"
)

// TURNCode returns the STUN error code carried by an error from pion's TURN
// client (a *stun.TurnError), or 0 when err is nil or carries none.
func TURNCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	return 0
}
