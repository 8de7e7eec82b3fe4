-- Issue 25: an SMTPUTF8 sender.  Postfix passes {mail_addr} in UTF-8 and the client's
-- name as it resolved; neither may cost the connection (it did: every such mail was
-- tempfailed until its sender gave up).
dofile(lib)
local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.25)
assert(conn, "cannot connect to the milter on port " .. port)
assert(mt.negotiate(conn, nil, nil, nil) == nil)
assert(mt.conninfo(conn, "hôst.exämple.de", "192.0.2.9") == nil)
expect(conn, SMFIR_CONTINUE, "connect from a non-ASCII host name")
assert(mt.macro(conn, SMFIC_MAIL, "{mail_addr}", "jörg@exämple.de", "i", "4QxYz1") == nil)
accepted(conn, "<jörg@exämple.de>", "<hotline@example.com>", "SMTPUTF8")
message(conn, idn)
expect(conn, SMFIR_CONTINUE, "an SMTPUTF8 customer's mail")
-- and the connection still takes the next mail
assert(mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", "hotline@example.com") == nil)
accepted(conn, "<cus@customer.test>", "<hotline@example.com>")
message(conn, idn)
expect(conn, SMFIR_CONTINUE, "the next mail on the same connection")
mt.disconnect(conn)
