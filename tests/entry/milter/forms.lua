-- Issue 19 at the milter: every form Postfix accepts of one of our addresses gets the
-- checks (items 1, 9), one refusal text for every reason (item 3), an
-- Authentication-Results with a comment glued to our authserv-id is deleted (item 4),
-- a second Subject above a signed agent mail is refused (item 2).
dofile(lib)
local conn = connect()
local generic = "this reply address does not take this mail"
local forged = "hotline+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
for _, form in ipairs({'<"' .. forged .. '"@example.com>', "<" .. forged .. "@example.com.>",
                       "<@relay.example:" .. forged .. "@example.com>",
                       "<" .. forged .. "%example.com@localhost>"}) do
  envelope(conn, "<alice@agents.test>", form)
  expect(conn, SMFIR_REPLYCODE, "RCPT with a forged token as " .. form)
  assert(mt.abort(conn) == nil)
end
local local_part, domain = token_address:match("^(.*)@(.*)$")
for _, form in ipairs({'<"' .. local_part .. '"@' .. domain .. '>',
                       "<" .. token_address .. ".>", "<@relay.example:" .. token_address .. ">"}) do
  accepted(conn, "<bob@agents.test>", form)
  message(conn, unsigned)
  say(conn, "550", "5.7.1", generic, "bob's unsigned mail to alice's address as " .. form)
end
-- a plus address that is no token is the queue address: on it goes
accepted(conn, "<cus@customer.test>", "<hotline+sales@example.com>")
message(conn, glued)
expect(conn, SMFIR_CONTINUE, "mail to a plus address")
assert(mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results"), "glued A-R kept")
-- new headers above alice's old signed mail
accepted(conn, "<alice@agents.test>", "<" .. token_address .. ">")
message(conn, doubled)
say(conn, "550", "5.7.1", generic .. ": a header appears twice",
    "a second Subject above a signed mail (the agent's own mistake: its class is said)")
mt.disconnect(conn)
