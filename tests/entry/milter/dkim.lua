-- DKIM: our Authentication-Results at the top, forged ones with our authserv-id removed.
dofile(lib)
local conn = connect()
for _, case in ipairs({{signed, "dkim=pass"}, {tampered, "dkim=fail"}, {unsigned, "dkim=none"}}) do
  accepted(conn, "<alice@agents.test>", "<hotline@example.com>")
    message(conn, case[1])
  expect(conn, SMFIR_CONTINUE, "end of message " .. case[2])
  local ar = mt.getheader(conn, "Authentication-Results", 0)
  assert(ar, "no Authentication-Results added")
  assert(ar:find(authserv .. "; " .. case[2], 1, true), "got: " .. ar)
  assert(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "not inserted at the top")
  if case[1] == signed then
    assert(ar:find("header.d=agents.test", 1, true), "no header.d: " .. ar)
    -- the forged header carrying our authserv-id is gone, the other one stays
    assert(mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results"), "forged one kept")
  end
end
mt.disconnect(conn)
