--- gateway.nvim: connect Neovim (0.11+) to the gateway's LSP door.
---
--- stdio (Neovim starts `gateway lsp --workspace <root>`, one process per project root):
---   require('gateway').setup({ mode = 'stdio' })
--- TCP (one shared `gateway serve`, several editors at once):
---   require('gateway').setup({ mode = 'tcp', host = '127.0.0.1', port = 2087, token = os.getenv('GATEWAY_TOKEN') })
---
--- Both modes go through `vim.lsp.config('gateway', ...)` and `vim.lsp.enable('gateway')`.
--- `:Gateway <capability> [json]` runs any `gateway.<capability>` command (workspace/executeCommand).

local M = {}

--- @class gateway.Options
--- @field mode? 'stdio'|'tcp'      how to reach the gateway (default 'stdio')
--- @field cmd? string[]            stdio command; `--workspace <root>` is appended (default {'gateway','lsp'})
--- @field host? string             TCP host (default '127.0.0.1')
--- @field port? integer            TCP port of `gateway serve --lsp-port` (default 2087)
--- @field token? string            API key or JWT, sent as initializationOptions.token (TCP with auth)
--- @field filetypes? string[]      filetypes to attach to; nil (default) means every file
--- @field root_markers? string[]   files or directories that mark a project root; the cwd when none is found
--- @field log_level? string        stdio: the gateway's stderr log level (default 'WARNING': Neovim copies
---                                 every stderr line into its lsp.log)
--- @field config? vim.lsp.Config   more fields for vim.lsp.config (capabilities, on_attach, handlers, ...)
--- @field enable? boolean          call vim.lsp.enable('gateway') (default true)

--- @type gateway.Options
M.defaults = {
  mode = 'stdio',
  cmd = { 'gateway', 'lsp' },
  host = '127.0.0.1',
  port = 2087,
  token = nil,
  filetypes = nil,
  root_markers = { '.git', 'pyproject.toml', 'setup.py', 'package.json', 'go.mod', 'Cargo.toml' },
  log_level = 'WARNING',
  config = nil,
  enable = true,
}

--- Options over the defaults; lists (cmd, root_markers, filetypes) are replaced, not merged.
--- @param opts? gateway.Options
--- @return gateway.Options
local function resolve(opts)
  return vim.tbl_extend('force', M.defaults, opts or {})
end

--- The `cmd` of the LSP config. stdio is a function so the resolved root becomes `--workspace`.
--- @param opts gateway.Options
local function make_cmd(opts)
  if opts.mode == 'tcp' then
    return vim.lsp.rpc.connect(opts.host, opts.port)
  elseif opts.mode ~= 'stdio' then
    error(("gateway: mode must be 'stdio' or 'tcp', got %s"):format(vim.inspect(opts.mode)))
  end
  return function(dispatchers, config)
    local root = config.root_dir or vim.fn.getcwd()
    local argv = vim.list_extend(vim.deepcopy(opts.cmd), { '--workspace', root })
    local env = vim.tbl_extend('force', { GATEWAY_LOGGING__LEVEL = opts.log_level }, config.cmd_env or {})
    return vim.lsp.rpc.start(argv, dispatchers, { cwd = root, env = env })
  end
end

--- Attach to real files only (not scratch buffers or `scheme://` buffers); root from the markers, else cwd.
--- @param opts gateway.Options
local function make_root_dir(opts)
  return function(bufnr, on_dir)
    local name = vim.api.nvim_buf_get_name(bufnr)
    if name == '' or name:match('^%a[%w+.-]*://') or vim.bo[bufnr].buftype ~= '' then
      return
    end
    on_dir(vim.fs.root(bufnr, opts.root_markers) or vim.fn.getcwd())
  end
end

--- The table handed to `vim.lsp.config('gateway', ...)`.
--- @param opts? gateway.Options
--- @return vim.lsp.Config
function M.config(opts)
  opts = resolve(opts)
  local init_options = vim.empty_dict()
  if opts.token and opts.token ~= '' then
    init_options = { token = opts.token }
  end
  return vim.tbl_extend('force', {
    cmd = make_cmd(opts),
    filetypes = opts.filetypes,
    root_dir = make_root_dir(opts),
    init_options = init_options,
  }, opts.config or {})
end

--- The running gateway client of a buffer (default: the current one), else any gateway client.
--- @param bufnr? integer
--- @return vim.lsp.Client?
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = 'gateway' })[1]
    or vim.lsp.get_clients({ name = 'gateway' })[1]
end

--- Run `gateway.<capability>` with one params table; the result (or error) goes to `callback`.
--- @param capability string  e.g. 'read_file' or 'gateway.read_file'
--- @param params? table
--- @param callback? fun(err: lsp.ResponseError?, result: any)
function M.execute(capability, params, callback)
  local client = M.client()
  if not client then
    vim.notify('gateway: no gateway client is running', vim.log.levels.ERROR)
    return
  end
  local command = capability:find('^gateway%.') and capability or ('gateway.' .. capability)
  callback = callback
    or function(err, result)
      if err then
        vim.notify(('%s failed: %s'):format(command, err.message), vim.log.levels.ERROR)
      else
        vim.notify(vim.inspect(result), vim.log.levels.INFO)
      end
    end
  params = params or {}
  -- an empty Lua table would go out as a JSON array; the command takes one object
  local arg = next(params) == nil and vim.empty_dict() or params
  client:request('workspace/executeCommand', { command = command, arguments = { arg } }, callback)
end

--- The commands the server advertises (`gateway.<capability>`).
--- @return string[]
function M.commands()
  local client = M.client()
  local provider = client and client.server_capabilities.executeCommandProvider or {}
  return provider.commands or {}
end

--- Configure the `gateway` LSP config and enable it; adds `:Gateway <capability> [json params]`.
--- @param opts? gateway.Options
function M.setup(opts)
  opts = resolve(opts)
  vim.lsp.config('gateway', M.config(opts))
  if opts.enable ~= false then
    vim.lsp.enable('gateway')
  end
  vim.api.nvim_create_user_command('Gateway', function(cmd)
    local capability, json = cmd.args:match('^(%S+)%s*(.*)$')
    if not capability then
      vim.ui.select(M.commands(), { prompt = 'gateway command' }, function(choice)
        if choice then
          M.execute(choice, {})
        end
      end)
      return
    end
    local ok, params = pcall(vim.json.decode, json ~= '' and json or '{}')
    if not ok or type(params) ~= 'table' then
      vim.notify('gateway: params must be a JSON object', vim.log.levels.ERROR)
      return
    end
    M.execute(capability, params)
  end, {
    nargs = '*',
    desc = 'Run a gateway command: :Gateway <capability> {"json": "params"}',
    complete = function(lead)
      local names = vim.tbl_map(function(name)
        return (name:gsub('^gateway%.', ''))
      end, M.commands())
      return vim.tbl_filter(function(name)
        return name:find(lead, 1, true) == 1
      end, names)
    end,
  })
end

return M
