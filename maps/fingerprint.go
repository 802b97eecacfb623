package maps

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// MaglevFingerprint is a short digest of a Maglev table as the backends'
// keys (addresses), not their node-local IDs: two xlb nodes whose tables
// send every slot to the same backend have the same fingerprint, whatever
// IDs each gave its backends. keys maps each ID in the table to its Key; an
// ID without one counts as "?". An empty table has the fingerprint "".
//
// The digest is SHA-256 over the table size and each slot's key, cut to 12
// hex digits (48 bits): enough for an operator comparing nodes by eye.
func MaglevFingerprint(table []uint32, keys map[uint32]string) string {
	if len(table) == 0 {
		return ""
	}
	d := MaglevDigest(table, keys)
	return hex.EncodeToString(d[:6])
}

// MaglevDigest is the full SHA-256 behind MaglevFingerprint.
func MaglevDigest(table []uint32, keys map[uint32]string) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(table)))
	h.Write(n[:])
	// Consecutive slots often share a backend: hash each run once, with its
	// length, which gives the same digest for the same slot-to-key mapping.
	for i := 0; i < len(table); {
		j := i + 1
		for j < len(table) && table[j] == table[i] {
			j++
		}
		k, ok := keys[table[i]]
		if !ok {
			k = "?"
		}
		binary.BigEndian.PutUint32(n[:], uint32(j-i))
		h.Write(n[:])
		h.Write([]byte(k))
		h.Write([]byte{0})
		i = j
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
