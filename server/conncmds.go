package server

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// hello answers HELLO [protover [AUTH user pass] [SETNAME name]]. Only RESP2
// is spoken: HELLO 3 gets Redis's NOPROTO error, which clients (go-redis,
// redis-py) take as "fall back to RESP2".
func (e *executor) hello(cc *clientConn, args [][]byte) reply {
	if len(args) >= 2 {
		v, ok := parseInt(args[1])
		if !ok {
			return errReply("ERR Protocol version is not an integer or out of range")
		}
		if v != 2 {
			return errReply(msgNoProto)
		}
		for i := 2; i < len(args); i++ {
			switch {
			case eqFold(args[i], "auth") && i+2 < len(args):
				return errReply("ERR AUTH is not supported: raftkv has no users")
			case eqFold(args[i], "setname") && i+1 < len(args):
				name := string(args[i+1])
				if !validClientName(name) {
					return errReply("ERR Client names cannot contain spaces, newlines or special characters.")
				}
				if cc != nil {
					cc.mu.Lock()
					cc.name = name
					cc.mu.Unlock()
				}
				i++
			default:
				return errReply("ERR Syntax error in HELLO option '" + sanitizeError(clip(string(args[i]), 64)) + "'")
			}
		}
	}
	var id int64
	if cc != nil {
		id = cc.id
	}
	return arrayReply{
		bulkString("server"), bulkString("redis"),
		bulkString("version"), bulkString(redisVersion),
		bulkString("proto"), intReply(2),
		bulkString("id"), intReply(id),
		bulkString("mode"), bulkString("standalone"),
		bulkString("role"), bulkString("master"),
		bulkString("modules"), arrayReply{},
	}
}

// redisVersion is the Redis version raftkv reports: the one whose command
// semantics it follows, so clients enable the right features.
const redisVersion = "7.0.0"

func validClientName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// client answers CLIENT SETNAME/GETNAME/ID/INFO (and accepts SETINFO, which
// recent clients send on connect).
func (e *executor) client(cc *clientConn, args [][]byte) reply {
	sub := strings.ToLower(string(args[1]))
	switch sub {
	case "setname":
		if len(args) != 3 {
			return errReply("ERR wrong number of arguments for 'client|setname' command")
		}
		name := string(args[2])
		if !validClientName(name) {
			return errReply("ERR Client names cannot contain spaces, newlines or special characters.")
		}
		if cc != nil {
			cc.mu.Lock()
			cc.name = name
			cc.mu.Unlock()
		}
		return okReply
	case "getname":
		if len(args) != 2 {
			return errReply("ERR wrong number of arguments for 'client|getname' command")
		}
		if cc == nil {
			return nilReply{}
		}
		cc.mu.Lock()
		defer cc.mu.Unlock()
		if cc.name == "" {
			return nilReply{}
		}
		return bulkString(cc.name)
	case "id":
		if len(args) != 2 {
			return errReply("ERR wrong number of arguments for 'client|id' command")
		}
		if cc == nil {
			return intReply(0)
		}
		return intReply(cc.id)
	case "info":
		if len(args) != 2 {
			return errReply("ERR wrong number of arguments for 'client|info' command")
		}
		if cc == nil {
			return bulkString("")
		}
		cc.mu.Lock()
		name := cc.name
		cc.mu.Unlock()
		return bulkString(fmt.Sprintf("id=%d addr=%s laddr=%s fd=0 name=%s age=%d idle=0 flags=N db=0 sub=0 psub=0 multi=-1 resp=2 cmd=client|info\n",
			cc.id, cc.nc.RemoteAddr(), cc.nc.LocalAddr(), name, int(time.Since(cc.created).Seconds())))
	case "setinfo":
		if len(args) != 4 {
			return errReply("ERR wrong number of arguments for 'client|setinfo' command")
		}
		return okReply
	}
	return errReply("ERR unknown subcommand '" + sanitizeError(clip(string(args[1]), 128)) + "'. Try CLIENT HELP.")
}

// commandReply answers COMMAND, COMMAND COUNT, COMMAND INFO name..., and
// COMMAND DOCS (empty: redis-cli only uses it for hints).
func commandReply(args [][]byte) reply {
	if len(args) == 1 {
		names := make([]string, 0, len(commandTable))
		for n := range commandTable {
			names = append(names, n)
		}
		sort.Strings(names)
		out := make(arrayReply, len(names))
		for i, n := range names {
			out[i] = commandInfo(commandTable[n])
		}
		return out
	}
	switch strings.ToLower(string(args[1])) {
	case "count":
		return intReply(len(commandTable))
	case "docs":
		return arrayReply{}
	case "info":
		out := make(arrayReply, 0, len(args)-2)
		for _, a := range args[2:] {
			spec := commandTable[strings.ToLower(string(a))]
			if spec == nil {
				out = append(out, nilArray{})
				continue
			}
			out = append(out, commandInfo(spec))
		}
		return out
	case "list":
		names := make([]string, 0, len(commandTable))
		for n := range commandTable {
			names = append(names, n)
		}
		sort.Strings(names)
		return bulkStrings(names)
	}
	return errReply("ERR unknown subcommand '" + sanitizeError(clip(string(args[1]), 128)) + "'. Try COMMAND HELP.")
}

// commandInfo is one entry of COMMAND's reply in Redis 7's shape: name,
// arity, flags, first key, last key, step, ACL categories, tips, key specs,
// subcommands.
func commandInfo(c *cmdSpec) reply {
	var flags arrayReply
	switch {
	case c.flags&flagWrite != 0:
		flags = append(flags, simpleReply("write"), simpleReply("denyoom"))
	case c.flags&flagRead != 0:
		flags = append(flags, simpleReply("readonly"))
	default:
		flags = append(flags, simpleReply("stale"), simpleReply("loading"))
	}
	if c.flags&flagFast != 0 {
		flags = append(flags, simpleReply("fast"))
	}
	return arrayReply{
		bulkString(c.name), intReply(c.arity), flags,
		intReply(c.first), intReply(c.last), intReply(c.step),
		arrayReply{}, arrayReply{}, arrayReply{}, arrayReply{},
	}
}
