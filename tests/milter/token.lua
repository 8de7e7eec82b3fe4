-- Mail to an agent's reply address: a bad token is refused at RCPT, a bad command mail at
-- the end of the message, a good one goes on.
dofile(lib)
local conn = connect()
envelope(conn, "<alice@agents.test>", "<hotline+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com>")
expect(conn, SMFIR_REPLYCODE, "RCPT with a forged token")
assert(mt.abort(conn) == nil)

envelope(conn, "<bob@agents.test>", "<" .. token_address .. ">")
expect(conn, SMFIR_CONTINUE, "RCPT with alice's token")
assert(mt.data(conn) == nil)
expect(conn, SMFIR_CONTINUE, "DATA")
message(conn, forged)
say(conn, "550", "5.7.1", reason, "bob's mail to alice's address")

envelope(conn, "<alice@agents.test>", "<" .. token_address .. ">")
expect(conn, SMFIR_CONTINUE, "RCPT")
assert(mt.data(conn) == nil)
expect(conn, SMFIR_CONTINUE, "DATA")
message(conn, good)
expect(conn, SMFIR_CONTINUE, "alice's signed command mail")
mt.disconnect(conn)
