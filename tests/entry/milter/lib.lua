-- Shared by the milter scripts.  pytest runs `miltertest -D port=... -D dir=... -s X.lua`
-- with the milter listening; every other parameter also comes with -D.

function connect(ip)
  local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.25)
  assert(conn, "cannot connect to the milter on port " .. port)
  assert(mt.negotiate(conn, nil, nil, nil) == nil)
  assert(mt.conninfo(conn, "client.test", ip or "192.0.2.1") == nil)
  expect(conn, SMFIR_CONTINUE, "connect")
  return conn
end

function expect(conn, code, what)
  local got = mt.getreply(conn)
  if got ~= code then
    error(what .. ": expected reply '" .. string.char(code) .. "', got '" .. string.char(got) .. "'")
  end
end

function say(conn, code, xcode, text, what)
  -- the milter asked for exactly this SMTP reply at end of message
  expect(conn, SMFIR_REPLYCODE, what)
  if not mt.eom_check(conn, MT_SMTPREPLY, code, xcode, text) then
    error(what .. ": expected '" .. code .. " " .. xcode .. " " .. text .. "'")
  end
end

function envelope(conn, from, to, ...)
  assert(mt.mailfrom(conn, from, ...) == nil)
  expect(conn, SMFIR_CONTINUE, "MAIL FROM " .. from)
  assert(mt.rcptto(conn, to) == nil)
end

function message(conn, path)
  -- the file's headers one by one (folded lines kept, value as after the colon) and its
  -- body, as Postfix passes a message; then end of message
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  data = data:gsub("\r\n", "\n")
  local head, body = data:match("^(.-)\n\n(.*)$")
  local name, value = nil, nil
  local function flush()
    if name then
      assert(mt.header(conn, name, value) == nil)
      expect(conn, SMFIR_CONTINUE, "header " .. name)
    end
  end
  for line in (head .. "\n"):gmatch("(.-)\n") do
    if line:match("^[ \t]") then
      value = value .. "\r\n" .. line
    else
      flush()
      name, value = line:match("^([^:]+):(.*)$")
    end
  end
  flush()
  assert(mt.eoh(conn) == nil)
  expect(conn, SMFIR_CONTINUE, "end of headers")
  if #body > 0 then
    assert(mt.bodystring(conn, (body:gsub("\n", "\r\n"))) == nil)
    expect(conn, SMFIR_CONTINUE, "body")
  end
  assert(mt.eom(conn) == nil)
end

function accepted(conn, from, to, ...)
  -- MAIL, RCPT and DATA, each answered with continue
  envelope(conn, from, to, ...)
  expect(conn, SMFIR_CONTINUE, "RCPT " .. to)
  assert(mt.data(conn) == nil)
  expect(conn, SMFIR_CONTINUE, "DATA")
end
