package armtemplate

import "strings"

// UniqueString is ARM's uniqueString(): its arguments joined with "-",
// hashed with the 64-bit MurmurHash variant of Azure Resource Manager
// (two 32-bit lanes over 8-byte blocks, seed 0), and the hash's top 65 bits
// written as 13 characters of lower-case RFC 4648 base32 (a-z, 2-7). The
// result matches Azure's for the same inputs (test vectors in
// unique_test.go), so templates get the same names here as in Azure. Like
// Azure's, it is case-sensitive.
func UniqueString(parts ...string) string {
	h := murmur64([]byte(strings.Join(parts, "-")))
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var out [13]byte
	for i := range out {
		out[i] = alphabet[h>>59]
		h <<= 5
	}
	return string(out[:])
}

const (
	murC1 uint32 = 0xab0e9789
	murC2 uint32 = 0x239b961b
	murF1 uint32 = 0x85ebca6b
	murF2 uint32 = 0xc2b2ae35
)

func rotl(x uint32, r uint) uint32 { return x<<r | x>>(32-r) }

func le32(b []byte) uint32 {
	var v uint32
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint32(b[i])
	}
	return v
}

func fmix(x uint32) uint32 {
	x = (x ^ x>>16) * murF1
	x = (x ^ x>>13) * murF2
	return x ^ x>>16
}

func murmur64(data []byte) uint64 {
	var h1, h2 uint32
	n := len(data)
	i := 0
	for ; i+8 <= n; i += 8 {
		k1 := rotl(le32(data[i:i+4])*murC2, 15) * murC1
		k2 := rotl(le32(data[i+4:i+8])*murC1, 17) * murC2
		h1 = rotl(h1^k1, 19) + h2
		h1 = h1*5 + 0x561ccd1b
		h2 = rotl(h2^k2, 13) + h1
		h2 = h2*5 + 0x0bcaa747
	}
	if rest := data[i:]; len(rest) > 0 {
		lo := rest[:min(len(rest), 4)]
		h1 ^= rotl(le32(lo)*murC2, 15) * murC1
		if len(rest) > 4 {
			h2 ^= rotl(le32(rest[4:])*murC1, 17) * murC2
		}
	}
	h2 ^= uint32(n)
	h1 = (h1 ^ uint32(n)) + h2
	h2 += h1
	h1, h2 = fmix(h1), fmix(h2)
	h1 += h2
	h2 += h1
	return uint64(h2)<<32 | uint64(h1)
}
