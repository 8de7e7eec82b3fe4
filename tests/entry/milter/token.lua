-- Mail to an agent's reply address: a bad token is refused at RCPT, a bad command mail at
-- the end of the message, a good one goes on.
dofile(lib)
local conn = connect()
envelope(conn, "<alice@agents.test>", "<hotline+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com>")
expect(conn, SMFIR_REPLYCODE, "RCPT with a forged token")
assert(mt.abort(conn) == nil)

accepted(conn, "<bob@agents.test>", "<" .. token_address .. ">")
message(conn, forged)
say(conn, "550", "5.7.1", reason, "bob's mail to alice's address")

accepted(conn, "<alice@agents.test>", "<" .. token_address .. ">")
message(conn, good)
expect(conn, SMFIR_CONTINUE, "alice's signed command mail")
mt.disconnect(conn)
