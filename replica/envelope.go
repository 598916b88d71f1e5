package replica

import "encoding/binary"

// An envelope wraps the data of every proposal this runtime makes (normal
// entries' Data and conf changes' Context) so that the member that proposed
// it can find the waiting future when it applies the entry, whichever member
// led at the time. The state machine and OnConfChange see the payload only.
//
//	+------+------+-----------------+----------------------+----------------+---------+
//	| 0xE7 | 0x01 | uvarint member  | uvarint incarnation  | uvarint seq    | payload |
//	+------+------+-----------------+----------------------+----------------+---------+
//	 magic  version
//
// The incarnation is drawn at random each time a Replica is created, so that
// a restarted member never mistakes an entry proposed by its previous life for
// one of its own new proposals. Data without the magic prefix (for example
// the founding conf changes that raft.Bootstrap writes) is passed through as is.
//
// Written to disk: never renumber.
const (
	envelopeMagic   byte = 0xE7
	envelopeVersion byte = 0x01
	// envelopeMaxHeader bounds the envelope's size: magic, version and three uvarints.
	envelopeMaxHeader = 2 + 3*binary.MaxVarintLen64
)

// proposalID names one proposal of one replica incarnation.
type proposalID struct {
	member      uint64
	incarnation uint64
	seq         uint64
}

// appendEnvelope appends the envelope of id around payload to b.
func appendEnvelope(b []byte, id proposalID, payload []byte) []byte {
	b = append(b, envelopeMagic, envelopeVersion)
	b = binary.AppendUvarint(b, id.member)
	b = binary.AppendUvarint(b, id.incarnation)
	b = binary.AppendUvarint(b, id.seq)
	return append(b, payload...)
}

// decodeEnvelope splits data into its proposal id and payload. ok is false
// when data carries no (valid) envelope; payload is then data itself. The
// payload aliases data.
func decodeEnvelope(data []byte) (id proposalID, payload []byte, ok bool) {
	if len(data) < 2 || data[0] != envelopeMagic || data[1] != envelopeVersion {
		return proposalID{}, data, false
	}
	rest := data[2:]
	var fields [3]uint64
	for i := range fields {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return proposalID{}, data, false
		}
		fields[i] = v
		rest = rest[n:]
	}
	return proposalID{member: fields[0], incarnation: fields[1], seq: fields[2]}, rest, true
}
