package armtemplate

import "testing"

// Vectors: outputs of Azure's uniqueString() published with an independent
// re-implementation checked against Bicep. None has a length of 5 to 7
// modulo 8, so that tail of the hash is not checked against Azure.
func TestUniqueStringMatchesAzure(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"test"}, "rbgf3xv4ufgzg"},
		{[]string{"hello", "world"}, "a7wkljktk6wne"},
		{[]string{"abc"}, "cgtzqvhu4i23s"},
		{[]string{"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-rg"}, "bmg7c6xu4tw46"},
		{[]string{"foo", "bar", "baz"}, "xzi4ioaxtmth4"},
	} {
		if got := UniqueString(tc.in...); got != tc.want {
			t.Errorf("UniqueString(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
