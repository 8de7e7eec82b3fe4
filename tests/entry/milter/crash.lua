-- A check that crashes tempfails that message; the connection goes on.
dofile(lib)
local conn = connect()
for i = 1, 2 do
  accepted(conn, "<cus@customer.test>", "<hotline@example.com>")
    message(conn, plain)
  if i == 1 then
    say(conn, "451", "4.3.0", "temporary problem checking this mail, try again later", "crash")
  else
    expect(conn, SMFIR_CONTINUE, "the next message")
  end
end
mt.disconnect(conn)
