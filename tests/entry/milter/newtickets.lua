-- A queue taking no new tickets: an unknown sender without a ticket is refused with the
-- queue's text; a customer, or a follow-up to a ticket, goes on (and is marked).
dofile(lib)
local conn = connect()
accepted(conn, "<stranger@else.test>", "<sales@example.com>")
message(conn, stranger)
say(conn, "550", "5.7.1", reject_text, "stranger to Sales")

accepted(conn, "<cus@customer.test>", "<sales@example.com>")
message(conn, customer)
expect(conn, SMFIR_CONTINUE, "a known customer")

accepted(conn, "<stranger@else.test>", "<sales@example.com>")
message(conn, followup)
expect(conn, SMFIR_CONTINUE, "a follow-up by a stranger")
assert(mt.eom_check(conn, MT_HDRADD, "X-OTRS-Mailgate-Ticket", " " .. number), "no ticket header")
assert(mt.eom_check(conn, MT_HDRDELETE, "X-OTRS-Mailgate-Ticket"), "the forged one was kept")

envelope(conn, "<someone@else.test>", "<friend@else.test>")
expect(conn, SMFIR_CONTINUE, "RCPT to an address not ours")
assert(mt.data(conn) == nil)
expect(conn, SMFIR_ACCEPT, "not ours: the milter asks nothing more")
mt.disconnect(conn)
