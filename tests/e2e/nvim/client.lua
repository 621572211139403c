-- Headless Neovim as a real LSP client of the gateway.
--
--   nvim --headless -u NONE -l client.lua config.json
--
-- config.json: { mode = "stdio"|"tcp", via = "start"|"plugin", root, python, host, port, token,
--                encoding (force one position encoding), plugin_dir, out, timeout_ms, log_level,
--                expect_refusal (the server must refuse initialize), http_url (edit a document
--                through REST and wait for Neovim's diagnostics to follow), external_timeout_ms }
-- Everything the client saw goes to `out` as JSON; the pytest side asserts on it. Every wait is a
-- vim.wait on a condition with a timeout; a step that fails records its error and the next steps
-- still run (after a failed start, none do).

local cfg = vim.json.decode(table.concat(vim.fn.readfile(arg[1]), '\n'))
local TIMEOUT = cfg.timeout_ms or 30000
local out = { steps = {}, errors = {}, notifications = {}, pulls = 0, pushes = 0 }

vim.o.swapfile = false
vim.o.shadafile = 'NONE'
vim.cmd('filetype on')
if cfg.log_level then
  vim.lsp.log.set_level(cfg.log_level)
end

-- keep what Neovim would have shown the user
vim.notify = function(msg, level)
  table.insert(out.notifications, { msg = tostring(msg), level = level })
end

local function wait_for(what, fn)
  local value
  local ok = vim.wait(TIMEOUT, function()
    value = fn()
    return value ~= nil and value ~= false
  end, 10)
  if not ok then
    error('timed out waiting for ' .. what, 0)
  end
  return value
end

out.timings_ms = {}

local function step(name, fn)
  local started = vim.uv.hrtime()
  local ok, err = xpcall(fn, debug.traceback)
  out.timings_ms[name] = math.floor((vim.uv.hrtime() - started) / 1e6)
  out.steps[name] = ok
  if not ok then
    out.errors[name] = tostring(err)
  end
  return ok
end

local function path(rel)
  return cfg.root .. '/' .. rel
end

local client, main_buf

local function open(rel)
  vim.cmd.edit(vim.fn.fnameescape(path(rel)))
  local bufnr = vim.api.nvim_get_current_buf()
  if client then
    if cfg.via ~= 'plugin' then
      -- vim.lsp.start attaches one buffer; an editor set-up attaches each file it opens
      vim.lsp.buf_attach_client(bufnr, client.id)
    end
    wait_for('the client to attach to ' .. rel, function()
      return vim.lsp.buf_is_attached(bufnr, client.id)
    end)
  end
  return bufnr
end

--- Put the cursor on the first occurrence of `needle` in the current buffer (byte column).
local function cursor_at(needle, nth)
  nth = nth or 1
  local seen = 0
  for lnum, line in ipairs(vim.api.nvim_buf_get_lines(0, 0, -1, false)) do
    local from = 1
    while true do
      local col = line:find(needle, from, true)
      if not col then
        break
      end
      seen = seen + 1
      if seen == nth then
        vim.api.nvim_win_set_cursor(0, { lnum, col - 1 })
        return lnum, col - 1
      end
      from = col + 1
    end
  end
  error(('%q not found in %s'):format(needle, vim.api.nvim_buf_get_name(0)), 0)
end

local function buffer_lines(rel)
  local bufnr = vim.fn.bufnr(path(rel))
  if bufnr == -1 or not vim.api.nvim_buf_is_loaded(bufnr) then
    return nil
  end
  return vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
end

local function contains(lines, needle)
  for _, line in ipairs(lines or {}) do
    if line:find(needle, 1, true) then
      return true
    end
  end
  return false
end

--- One request through Neovim's own request path, waiting on the answer.
local function request(bufnr, method, params)
  local responses, err = vim.lsp.buf_request_sync(bufnr, method, params, TIMEOUT)
  if not responses then
    error(('%s: %s'):format(method, err or 'no response'), 0)
  end
  for _, response in pairs(responses) do
    if response.err then
      error(('%s: %s'):format(method, vim.inspect(response.err)), 0)
    end
    return response.result
  end
  error(method .. ': no client answered', 0)
end

-- count how diagnostics arrive: pushed by the server or pulled by Neovim
local push_handler = vim.lsp.handlers['textDocument/publishDiagnostics']
vim.lsp.handlers['textDocument/publishDiagnostics'] = function(...)
  out.pushes = out.pushes + 1
  return push_handler(...)
end
vim.api.nvim_create_autocmd('LspRequest', {
  callback = function(ev)
    local req = ev.data.request
    if req and req.type == 'pending' and req.method == 'textDocument/diagnostic' then
      out.pulls = out.pulls + 1
    end
  end,
})

local capabilities = vim.lsp.protocol.make_client_capabilities()
if cfg.encoding then
  capabilities.general.positionEncodings = { cfg.encoding }
end

local function on_exit(code, signal)
  out.exit = { code = code, signal = signal }
end

local started = step('start', function()
  if cfg.via == 'plugin' then
    vim.opt.runtimepath:prepend(cfg.plugin_dir)
    local gateway = require('gateway')
    gateway.setup({
      mode = cfg.mode,
      cmd = { cfg.python, '-m', 'gateway.cli', 'lsp' },
      host = cfg.host,
      port = cfg.port,
      token = cfg.token,
      config = { capabilities = capabilities, on_exit = on_exit },
    })
    main_buf = open('main.py')
  else
    local cmd
    if cfg.mode == 'stdio' then
      cmd = { cfg.python, '-m', 'gateway.cli', 'lsp', '--workspace', cfg.root }
    else
      cmd = vim.lsp.rpc.connect(cfg.host, cfg.port)
    end
    main_buf = open('main.py')
    vim.lsp.start({
      name = 'gateway',
      cmd = cmd,
      root_dir = cfg.root,
      capabilities = capabilities,
      init_options = cfg.token and { token = cfg.token } or nil,
      on_exit = on_exit,
    }, { bufnr = main_buf })
  end
  if cfg.expect_refusal then
    -- a refused initialize: the client must stop instead of attaching
    wait_for('the refused client to exit', function()
      return out.exit
    end)
    out.attached = #vim.lsp.get_clients({ bufnr = main_buf, name = 'gateway' }) > 0
    out.refused = true
    return
  end
  client = wait_for('the gateway client to initialize and attach', function()
    local c = vim.lsp.get_clients({ bufnr = main_buf, name = 'gateway' })[1]
    return c and c.initialized and c or nil
  end)
  out.offset_encoding = client.offset_encoding
  out.root_dir = client.root_dir
  local caps = client.server_capabilities
  out.server = {
    position_encoding = caps.positionEncoding,
    completion = caps.completionProvider ~= nil,
    hover = caps.hoverProvider and true or false,
    rename = caps.renameProvider and true or false,
    diagnostic = caps.diagnosticProvider ~= nil,
    commands = (caps.executeCommandProvider or {}).commands or {},
  }
end)

if started and not out.refused then
  step('completion', function()
    vim.api.nvim_set_current_buf(main_buf)
    local lnum, col = cursor_at('stock.add(Item("pen"')
    vim.api.nvim_win_set_cursor(0, { lnum, col + #'stock.' })
    local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
    local result = request(main_buf, 'textDocument/completion', params)
    local items = result and (result.items or result) or {}
    out.completion = vim.tbl_map(function(item)
      return item.label
    end, items)
  end)

  step('hover', function()
    vim.api.nvim_set_current_buf(main_buf)
    cursor_at('summarize(build())')
    local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
    local result = request(main_buf, 'textDocument/hover', params)
    local lines = result and vim.lsp.util.convert_input_to_markdown_lines(result.contents) or {}
    out.hover = table.concat(lines, '\n')
  end)

  step('navigation', function()
    vim.api.nvim_set_current_buf(main_buf)
    cursor_at('summarize(build())')
    local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
    local definition = request(main_buf, 'textDocument/definition', params)
    local location = definition[1] or definition
    out.definition = {
      path = vim.uri_to_fname(location.uri or location.targetUri),
      line = (location.range or location.targetSelectionRange).start.line,
    }
    params.context = { includeDeclaration = true }
    local references = request(main_buf, 'textDocument/references', params)
    out.references = vim.tbl_map(function(loc)
      return vim.fn.fnamemodify(vim.uri_to_fname(loc.uri), ':.') .. ':' .. loc.range.start.line
    end, references)
    table.sort(out.references)
    local symbols = request(main_buf, 'textDocument/documentSymbol', {
      textDocument = vim.lsp.util.make_text_document_params(main_buf),
    })
    out.symbols = vim.tbl_map(function(sym)
      return sym.name
    end, symbols)
  end)

  step('diagnostics', function()
    local undefined = open('undefined.py')
    local items = wait_for('diagnostics of undefined.py', function()
      local d = vim.diagnostic.get(undefined)
      return #d > 0 and d or nil
    end)
    out.diagnostics_undefined = vim.tbl_map(function(d)
      return { message = d.message, lnum = d.lnum, col = d.col, severity = d.severity, source = d.source }
    end, items)

    local syntax = open('syntax.py')
    items = wait_for('diagnostics of syntax.py', function()
      local d = vim.diagnostic.get(syntax)
      return #d > 0 and d or nil
    end)
    out.diagnostics_syntax = vim.tbl_map(function(d)
      return { message = d.message, lnum = d.lnum, col = d.col, severity = d.severity, source = d.source }
    end, items)

    -- an edit that defines the name clears the diagnostic (didChange, then a fresh pull or push)
    vim.api.nvim_set_current_buf(undefined)
    vim.api.nvim_buf_set_lines(undefined, 0, 0, false, { 'undefined_name = 1' })
    wait_for('the diagnostics of undefined.py to clear after an edit', function()
      return #vim.diagnostic.get(undefined) == 0
    end)
    out.diagnostics_cleared = true
  end)

  if cfg.http_url then
    step('external_edit', function()
      -- another door (REST) edits a document Neovim has open: Neovim should get the new diagnostics
      local undefined = vim.fn.bufnr(path('undefined.py'))
      local body = vim.json.encode({
        path = 'undefined.py',
        version = 1000,
        changes = { { text = 'print(other_missing)\n' } },
      })
      local post = [[
import sys, urllib.request
url, body, token = sys.argv[1:4]
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token
req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
print(urllib.request.urlopen(req, timeout=30).status)
]]
      local url = cfg.http_url .. '/v1/capabilities/change_document'
      local res = vim.system({ cfg.python, '-c', post, url, body, cfg.token or '' }):wait(TIMEOUT)
      out.external_status = vim.trim(res.stdout or '')
      local seen = vim.wait(cfg.external_timeout_ms or TIMEOUT, function()
        for _, d in ipairs(vim.diagnostic.get(undefined)) do
          if d.message:find('other_missing', 1, true) then
            return true
          end
        end
        return false
      end, 10)
      out.external_diagnostics = vim.tbl_map(function(d)
        return d.message
      end, vim.diagnostic.get(undefined))
      out.external_seen = seen
    end)
  end

  step('rename', function()
    vim.api.nvim_set_current_buf(main_buf)
    cursor_at('summarize(build())')
    vim.lsp.buf.rename('summarize_stock', { name = 'gateway' })
    wait_for('the rename to reach main.py and shop/report.py', function()
      return contains(buffer_lines('main.py'), 'print(summarize_stock(build()))')
        and contains(buffer_lines('shop/report.py'), 'def summarize_stock(')
    end)
    out.rename_main = buffer_lines('main.py')
    out.rename_report = buffer_lines('shop/report.py')
  end)

  step('unicode_rename', function()
    local uni = open('uni.py')
    cursor_at('total =')
    vim.lsp.buf.rename('grand_total', { name = 'gateway' })
    wait_for('the rename in uni.py', function()
      return contains(vim.api.nvim_buf_get_lines(uni, 0, -1, false), 'grand_total')
    end)
    out.unicode_lines = vim.api.nvim_buf_get_lines(uni, 0, -1, false)
  end)

  step('command', function()
    -- the gateway sees the unsaved buffer text: the rename above is not written to disk
    local result
    if cfg.via == 'plugin' then
      local done = false
      require('gateway').execute('read_file', { path = 'main.py' }, function(err, res)
        if err then
          error(vim.inspect(err))
        end
        result, done = res, true
      end)
      wait_for('gateway.read_file', function()
        return done
      end)
      -- and the user command, which shows the result with vim.notify
      vim.cmd('Gateway read_file {"path": "shop/pricing.py", "start_line": 1, "end_line": 1}')
      out.user_command = wait_for(':Gateway read_file', function()
        for _, n in ipairs(out.notifications) do
          if n.msg:find('Prices: rounding and tax', 1, true) then
            return n.msg
          end
        end
      end)
      out.notifications = {}
    else
      result = request(main_buf, 'workspace/executeCommand', {
        command = 'gateway.read_file',
        arguments = { { path = 'main.py' } },
      })
    end
    out.command = { source = result.source, text = result.text, version = result.version }
  end)

  step('stop', function()
    out.clients = #vim.lsp.get_clients({ name = 'gateway' })
    client:stop()
    wait_for('the client to stop', function()
      return client:is_stopped() and out.exit ~= nil
    end)
  end)
end

vim.fn.writefile({ vim.json.encode(out) }, cfg.out)
vim.cmd('qall!')
