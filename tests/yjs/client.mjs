// An unmodified Yjs client (yjs 13 + y-websocket 3) driven over stdin/stdout by the tests.
// argv: serverUrl room [token]. stdin: one JSON command per line; stdout: one JSON event per line.
//   {"op":"insert","index":0,"text":"x"}  {"op":"delete","index":0,"length":1}  {"op":"text"}
//   {"op":"awareness","state":{...}}  {"op":"pause"} / {"op":"resume"} (disconnect / reconnect)  {"op":"quit"}
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import readline from 'node:readline'

const [serverUrl, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const text = doc.getText('content')
const params = token ? { token } : {}
const provider = new WebsocketProvider(serverUrl, room, doc, { WebSocketPolyfill: WebSocket, params, disableBc: true })
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

provider.on('sync', (synced) => { if (synced) emit({ event: 'synced', text: text.toString() }) })
provider.on('status', (e) => emit({ event: 'status', status: e.status }))
provider.on('connection-close', (e) => emit({ event: 'closed', code: e ? e.code : null }))
text.observe(() => emit({ event: 'changed', text: text.toString() }))
provider.awareness.on('change', () => {
  const states = []
  provider.awareness.getStates().forEach((state, client) => { if (client !== doc.clientID) states.push(state) })
  emit({ event: 'awareness', states })
})
// y-websocket reports a y-protocols auth message (permission denied) with console.warn
console.warn = (...args) => emit({ event: 'warn', message: args.join(' ') })

// Commands count code points (like the gateway's core); Yjs in JavaScript counts UTF-16 units.
const units = (index) => Array.from(text.toString()).slice(0, index).join('').length
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const cmd = JSON.parse(line)
  if (cmd.op === 'insert') text.insert(units(cmd.index), cmd.text)
  else if (cmd.op === 'delete') text.delete(units(cmd.index), units(cmd.index + cmd.length) - units(cmd.index))
  else if (cmd.op === 'text') emit({ event: 'text', text: text.toString() })
  else if (cmd.op === 'awareness') provider.awareness.setLocalState(cmd.state)
  else if (cmd.op === 'pause') provider.disconnect()
  else if (cmd.op === 'resume') provider.connect()
  else if (cmd.op === 'quit') { provider.destroy(); process.exit(0) }
  emit({ event: 'ok', op: cmd.op })
})
rl.on('close', () => { provider.destroy(); process.exit(0) })
