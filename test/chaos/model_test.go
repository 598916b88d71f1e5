package chaos

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

func op(client int, in input, call, ret int64, out output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

// TestModel checks the model on small histories whose verdict is known, so
// that a green chaos run means something.
func TestModel(t *testing.T) {
	set := func(v string) input { return input{kind: opSet, key: "k", value: v} }
	get := input{kind: opGet, key: "k"}
	app := func(v string) input { return input{kind: opAppend, key: "a", value: v} }
	incr := input{kind: opIncr, key: "n"}
	never := int64(1 << 62)
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"read sees the acknowledged write", []porcupine.Operation{
			op(0, set("1"), 0, 10, output{}), op(1, get, 20, 30, output{value: "1"})}, true},
		{"stale read after an acknowledged write", []porcupine.Operation{
			op(0, set("1"), 0, 10, output{}), op(0, set("2"), 11, 20, output{}),
			op(1, get, 30, 40, output{value: "1"})}, false},
		{"concurrent read may see either", []porcupine.Operation{
			op(0, set("1"), 0, 10, output{}), op(0, set("2"), 11, 40, output{}),
			op(1, get, 30, 50, output{value: "1"})}, true},
		{"unknown write may take effect later", []porcupine.Operation{
			op(0, set("1"), 0, never, output{unknown: true}), op(1, get, 20, 30, output{value: ""}),
			op(1, get, 40, 50, output{value: "1"})}, true},
		{"append lengths must follow the order", []porcupine.Operation{
			op(0, app("xy,"), 0, 10, output{n: 3}), op(1, app("z,"), 20, 30, output{n: 2})}, false},
		{"an incr applied twice is caught", []porcupine.Operation{
			op(0, incr, 0, never, output{unknown: true}), op(1, incr, 20, 30, output{n: 3})}, false},
		{"an unknown incr may count once", []porcupine.Operation{
			op(0, incr, 0, never, output{unknown: true}), op(1, incr, 20, 30, output{n: 2})}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(kvModel, tc.ops); got != tc.want {
				t.Fatalf("linearizable = %v, want %v", got, tc.want)
			}
		})
	}
}
