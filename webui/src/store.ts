// The one store of server state. It is fed by the SSE stream; REST answers only fill it
// in (first load, after a reconnect, after an action). The backend decides everything:
// this file copies its status objects, it never derives one.
import { computed, reactive } from 'vue'
import { Api, ApiError, forgetApiKey } from './api'
import {
  EVENT_NAMES,
  type ErrorInfo,
  type EventFrame,
  type EventName,
  type EventRecord,
  type OAuthStatus,
  type ConfigReport,
  type ServerStatus,
} from './types'
import { formatClock, parseIso } from './time'
import { badgeOf, reasonWords } from './badge'

export type ConnectionState = 'connecting' | 'live' | 'reconnecting'

export interface Notice {
  id: number
  kind: 'error' | 'info'
  text: string
  link: { href: string; label: string } | null
  /** One line each, under the text: e.g. every server whose logout failed, with the backend's reason. */
  details: string[]
}

interface State {
  servers: ServerStatus[]
  loaded: boolean
  loadError: string | null
  keyRejected: boolean
  connection: ConnectionState
  events: EventRecord[]
  notices: Notice[]
  /** Server name → the action in flight for it, so its buttons can wait. */
  busy: Record<string, 'login' | 'logout' | 'refresh'>
  busyAll: boolean
  /** The config file's problems, from GET /api/v1/status; null until read. */
  config: ConfigReport | null
}

const MAX_EVENTS = 50
const MAX_NOTICES = 4
const INFO_NOTICE_MS = 8000
// The gateway pings every 15 s; three missed pings mean the stream is silently dead.
const SILENCE_MS = 45_000
const RETRY_MIN_MS = 1000
const RETRY_MAX_MS = 30_000
// A refused config edit makes no server event: the status is read this often while the page is open.
const CONFIG_POLL_MS = 3000

export const state = reactive<State>({
  servers: [],
  loaded: false,
  loadError: null,
  keyRejected: false,
  connection: 'connecting',
  events: [],
  notices: [],
  busy: {},
  busyAll: false,
  config: null,
})

export const counts = computed(() => {
  const byStatus: Record<OAuthStatus, number> = { none: 0, authenticated: 0, expired: 0, error: 0 }
  // Like the gateway's stats: statuses count OAuth servers, the total counts every server.
  for (const server of state.servers) if (server.is_oauth) byStatus[server.oauth_status] += 1
  return { total: state.servers.length, byStatus }
})

export const hasOAuth = computed(() => state.servers.some((server) => server.is_oauth))

/** The backend says whether a token is held (also in Auth Error: a person may still end that session). */
export function holdsToken(server: ServerStatus): boolean {
  return server.is_oauth && server.token_held
}

/** The backend's own rule, shown as-is: a person must log in. */
export function needsLogin(server: ServerStatus): boolean {
  // A disabled server has no session in the service: nothing to log in to until it is enabled.
  return (
    server.is_oauth &&
    server.enabled &&
    (server.action === 'login' || server.oauth_status === 'none' || server.oauth_status === 'expired' ||
      server.oauth_status === 'error')
  )
}

let api: Api | null = null
let source: EventSource | null = null
let lastHeard = 0
let lastEventId = ''
let retryMs = RETRY_MIN_MS
let retryTimer: number | undefined
let watchdog: number | undefined
let configPoll: number | undefined
let noticeSeq = 0
let eventSeq = 0
// Every servers.changed bumps `changeSeq`; a REST answer started before a later event for
// the same server is older than what the event said and is dropped for that server.
let changeSeq = 0
const changedAt = new Map<string, number>()
const pendingOne = new Map<string, number>()

export function start(key: string): void {
  api = new Api(key)
  connect()
  watchdog = window.setInterval(checkSilence, 5000)
  configPoll = window.setInterval(() => void refreshConfig(), CONFIG_POLL_MS)
  void refreshAll()
  void refreshConfig()
}

/** Reads the config's problems (`config_problems`, `config_differs`) for the banner. */
export async function refreshConfig(): Promise<void> {
  if (!api) return
  try {
    const data = await api.status()
    state.config = {
      file: data.config_file,
      problems: data.config_problems ?? [],
      warnings: data.config_warnings ?? [],
      differs: data.config_differs === true,
    }
  } catch (error) {
    isKeyRejected(error)
  }
}

export function stop(): void {
  source?.close()
  source = null
  window.clearTimeout(retryTimer)
  window.clearInterval(watchdog)
  window.clearInterval(configPoll)
  for (const timer of pendingOne.values()) window.clearTimeout(timer)
  pendingOne.clear()
  api = null
}

// ---- SSE ---------------------------------------------------------------------------

function connect(): void {
  if (!api) return
  // A fresh EventSource does not send Last-Event-ID; the gateway also reads it from the query.
  const url = api.eventsUrl() + (lastEventId ? `&lastEventId=${encodeURIComponent(lastEventId)}` : '')
  const es = new EventSource(url)
  source = es
  es.addEventListener('open', () => {
    if (source !== es) return
    lastHeard = Date.now()
    retryMs = RETRY_MIN_MS
    state.connection = 'live'
    // Whatever changed before the stream was open (first load, or beyond the replay ring)
    // is in the list: a full read costs little.
    void refreshAll()
  })
  es.addEventListener('error', () => {
    if (source !== es) return
    state.connection = 'reconnecting'
    // CONNECTING: the browser retries by itself with Last-Event-ID. CLOSED: it gave up
    // (an HTTP error answer), so retry ourselves and find out whether the key still works.
    if (es.readyState === EventSource.CLOSED) {
      es.close()
      scheduleReconnect()
      void refreshAll()
    }
  })
  es.addEventListener('ping', () => {
    lastHeard = Date.now()
  })
  for (const name of EVENT_NAMES) {
    es.addEventListener(name, (event) => {
      if (source !== es) return
      lastHeard = Date.now()
      const message = event as MessageEvent<string>
      if (message.lastEventId) lastEventId = message.lastEventId
      onEvent(name, message)
    })
  }
}

function scheduleReconnect(): void {
  window.clearTimeout(retryTimer)
  retryTimer = window.setTimeout(() => {
    if (state.keyRejected) return
    connect()
  }, retryMs)
  retryMs = Math.min(retryMs * 2, RETRY_MAX_MS)
}

function checkSilence(): void {
  if (state.connection !== 'live' || !source) return
  if (Date.now() - lastHeard > SILENCE_MS) {
    source.close()
    source = null
    state.connection = 'reconnecting'
    connect()
  }
}

function onEvent(name: EventName, event: MessageEvent<string>): void {
  let frame: EventFrame
  try {
    frame = JSON.parse(event.data) as EventFrame
  } catch {
    return
  }
  const payload = frame?.payload
  if (!payload || typeof payload !== 'object') return
  const server = String((name === 'servers.changed' ? payload.name : payload.server_name) ?? '')
  recordEvent(name, event.lastEventId, server, frame.timestamp, payload)
  if (name === 'servers.changed') {
    const { reason, ...status } = payload
    if (reason === 'login_failed') loginFailed(server, (status.last_error as ErrorInfo | null)?.message)
    changeSeq += 1
    changedAt.set(server, changeSeq)
    upsert(status as unknown as ServerStatus)
  } else if (server) {
    if (name === 'oauth.login_completed') loginTabs.delete(server)
    scheduleRefreshOne(server)
  }
}

function recordEvent(
  name: EventName,
  id: string,
  server: string,
  timestamp: number,
  payload: Record<string, unknown>,
): void {
  if (id && state.events.some((row) => row.id === id)) return
  eventSeq += 1
  const at = typeof timestamp === 'number' && Number.isFinite(timestamp) ? timestamp * 1000 : Date.now()
  state.events.unshift({ key: id || `local-${eventSeq}`, id, name, server, at, detail: describe(name, payload) })
  if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS
}

function describe(name: EventName, payload: Record<string, unknown>): string {
  switch (name) {
    case 'servers.changed': {
      const status = payload as unknown as ServerStatus
      const reason = reasonWords(typeof payload.reason === 'string' ? payload.reason : '')
      const error = payload.reason === 'login_failed' ? (payload.last_error as ErrorInfo | null)?.message : ''
      return [badgeOf(status).label, reason && (error ? `${reason}: ${error}` : reason)].filter(Boolean).join(' · ')
    }
    case 'oauth.login_completed':
      return 'logged in'
    case 'oauth.token_refreshed': {
      const expires = parseIso(typeof payload.expires_at === 'string' ? payload.expires_at : null)
      return expires === null ? 'token refreshed' : `token refreshed, expires ${formatClock(expires)}`
    }
    case 'oauth.refresh_failed': {
      const error = payload.error as ErrorInfo | null | undefined
      const message = error?.message ?? 'refresh failed'
      if (payload.will_retry === true) {
        const attempts = typeof payload.attempts === 'number' ? `${payload.attempts} attempts` : 'failing'
        return `refresh failing (${attempts}), still retrying: ${message}`
      }
      return payload.action === 'login' ? `${message} — log in again` : message
    }
    case 'oauth.logout': {
      const revoked = payload.revoked === true ? 'tokens revoked' : 'logged out'
      const reason = typeof payload.reason === 'string' && payload.reason ? ` (${payload.reason})` : ''
      return revoked + reason
    }
  }
}

// ---- server list -------------------------------------------------------------------

function upsert(status: ServerStatus): void {
  if (!status || typeof status.name !== 'string') return
  const index = state.servers.findIndex((server) => server.name === status.name)
  if (index === -1) state.servers.push(status)
  else state.servers[index] = status
}

function removeServer(name: string): void {
  const index = state.servers.findIndex((server) => server.name === name)
  if (index !== -1) state.servers.splice(index, 1)
}

/** Reads every server; keeps what an event said meanwhile. */
export async function refreshAll(): Promise<void> {
  if (!api) return
  const startedAt = changeSeq
  try {
    const data = await api.listServers()
    const fresh = new Set(data.servers.map((server) => server.name))
    const merged = data.servers.map((server) =>
      (changedAt.get(server.name) ?? 0) > startedAt
        ? (state.servers.find((local) => local.name === server.name) ?? server)
        : server,
    )
    for (const local of state.servers) {
      if (!fresh.has(local.name) && (changedAt.get(local.name) ?? 0) > startedAt) merged.push(local)
    }
    state.servers = merged
    state.loaded = true
    state.loadError = null
  } catch (error) {
    if (isKeyRejected(error)) return
    state.loadError = sentence(error)
  }
}

function scheduleRefreshOne(name: string): void {
  window.clearTimeout(pendingOne.get(name))
  pendingOne.set(
    name,
    window.setTimeout(() => {
      pendingOne.delete(name)
      void refreshOne(name)
    }, 150),
  )
}

async function refreshOne(name: string): Promise<void> {
  if (!api) return
  const startedAt = changeSeq
  try {
    const status = await api.getServer(name)
    if ((changedAt.get(name) ?? 0) <= startedAt) upsert(status)
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) removeServer(name)
    else isKeyRejected(error)
  }
}

// ---- actions -----------------------------------------------------------------------

/**
 * Asks for an authorization URL and opens it in a new tab. The tab is opened before the
 * request so the browser counts it as the click's own popup and does not block it.
 */
export async function login(name: string): Promise<void> {
  if (!api || state.busy[name]) return
  const tab = openPlaceholderTab()
  state.busy[name] = 'login'
  try {
    const data = await api.login(name)
    if (tab) loginTabs.set(name, tab)
    if (data.browser_opened) {
      tab?.close()
      notify('info', `The sign-in page for ${name} opened in your browser.`, {
        href: data.auth_url,
        label: 'Open it here instead',
      })
    } else if (tab && !tab.closed) {
      tab.location.href = data.auth_url
    } else {
      notify('info', `Your browser blocked the sign-in tab for ${name}.`, {
        href: data.auth_url,
        label: 'Open the sign-in page',
      })
    }
  } catch (error) {
    tab?.close()
    if (!isKeyRejected(error)) notify('error', `Could not log in to ${name}: ${sentence(error)}`)
  } finally {
    delete state.busy[name]
  }
}

/** The sign-in tab each login opened: a failed login closes it, and the page says which server failed and why. */
const loginTabs = new Map<string, Window>()

function loginFailed(name: string, why: string | undefined): void {
  const tab = loginTabs.get(name)
  loginTabs.delete(name)
  if (!tab) return // a login started elsewhere (the CLI): its card and the events panel tell it
  if (!tab.closed) tab.close()
  notify('error', `Could not log in to ${name}: ${why || 'the login failed'}`)
}

function openPlaceholderTab(): Window | null {
  const tab = window.open('', '_blank')
  if (!tab) return null
  try {
    tab.opener = null
    tab.document.title = 'Signing in…'
    tab.document.body.textContent = 'Opening the sign-in page…'
  } catch {
    // A browser that isolates the new tab still lets us navigate it.
  }
  return tab
}

export async function logout(name: string): Promise<void> {
  if (!api || state.busy[name]) return
  state.busy[name] = 'logout'
  try {
    await api.logout(name)
    scheduleRefreshOne(name)
  } catch (error) {
    fail(error)
  } finally {
    delete state.busy[name]
  }
}

export async function logoutAll(): Promise<void> {
  if (!api || state.busyAll) return
  state.busyAll = true
  try {
    const data = await api.logoutAll()
    await refreshAll()
    const failed = data.results.filter((result) => result.success !== true)
    const done = data.results.length - failed.length
    if (failed.length === 0) {
      notify('info', `Logged out of ${done} server${done === 1 ? '' : 's'}.`)
    } else {
      notify(
        'error',
        `Logged out of ${done} of ${data.results.length} servers; ${failed.length} could not be logged out:`,
        null,
        failed.map((result) => `${result.server}: ${result.error || 'the service gave no reason'}`),
      )
    }
  } catch (error) {
    fail(error)
  } finally {
    state.busyAll = false
  }
}

export async function refresh(name: string): Promise<void> {
  if (!api || state.busy[name]) return
  state.busy[name] = 'refresh'
  try {
    await api.refresh(name)
    scheduleRefreshOne(name)
  } catch (error) {
    fail(error)
  } finally {
    delete state.busy[name]
  }
}

// ---- notices -----------------------------------------------------------------------

export function notify(
  kind: Notice['kind'],
  text: string,
  link: Notice['link'] = null,
  details: string[] = [],
): void {
  noticeSeq += 1
  const id = noticeSeq
  state.notices.push({ id, kind, text, link, details })
  if (state.notices.length > MAX_NOTICES) state.notices.splice(0, state.notices.length - MAX_NOTICES)
  if (kind === 'info') window.setTimeout(() => dismiss(id), INFO_NOTICE_MS)
}

export function dismiss(id: number): void {
  const index = state.notices.findIndex((notice) => notice.id === id)
  if (index !== -1) state.notices.splice(index, 1)
}

function fail(error: unknown): void {
  if (isKeyRejected(error)) return
  notify('error', sentence(error))
}

function sentence(error: unknown): string {
  return error instanceof Error && error.message ? error.message : 'Something went wrong.'
}

function isKeyRejected(error: unknown): boolean {
  if (!(error instanceof ApiError) || error.status !== 401) return false
  state.keyRejected = true
  forgetApiKey()
  stop()
  return true
}
