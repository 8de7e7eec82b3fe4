-- Issue 25: a command mail whose DKIM signature leaves a header it has, or part of its
-- body, unsigned is refused at the end of the message, saying that class of mistake; the
-- same mail signed over everything goes on.
dofile(lib)
local conn = connect()
for _, case in ipairs({{narrow, "signed over From alone"}, {partial, "l= shorter than the body"},
                       {added, "a Cc added after signing"}}) do
  accepted(conn, "<alice@agents.test>", "<" .. token_address .. ">")
  message(conn, case[1])
  say(conn, "550", "5.7.1", reason, case[2])
end
accepted(conn, "<alice@agents.test>", "<" .. token_address .. ">")
message(conn, good)
expect(conn, SMFIR_CONTINUE, "signed over everything")
mt.disconnect(conn)
