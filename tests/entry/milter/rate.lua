-- More than max_per_hour_sender (3) mails an hour from one sender: tempfail at RCPT.
dofile(lib)
local conn = connect()
for i = 1, 4 do
  envelope(conn, "<busy@customer.test>", "<hotline@example.com>")
  if i == 4 then
    expect(conn, SMFIR_REPLYCODE, "RCPT of the fourth mail")
  else
    expect(conn, SMFIR_CONTINUE, "RCPT of mail " .. i)
    assert(mt.data(conn) == nil)
    expect(conn, SMFIR_CONTINUE, "DATA")
    message(conn, plain)
    expect(conn, SMFIR_CONTINUE, "end of mail " .. i)
  end
end
assert(mt.abort(conn) == nil)
-- another sender from the same client is still welcome
envelope(conn, "<calm@customer.test>", "<hotline@example.com>")
expect(conn, SMFIR_CONTINUE, "RCPT from another sender")
mt.disconnect(conn)
