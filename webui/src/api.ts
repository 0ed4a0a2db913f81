// The REST client: the API key, the JSON envelope, one function per endpoint.
import type {
  Envelope,
  LoginData,
  LogoutAllData,
  LogoutData,
  RefreshData,
  ServerStatus,
  ServersData,
  StatusData,
} from './types'

const KEY_STORAGE = 'mcpproxy.apikey'

/**
 * Takes the key from `/?apikey=KEY` once, keeps it for this tab and removes it from the
 * address bar (and so from history and bookmarks).
 */
export function takeApiKey(): string | null {
  const url = new URL(window.location.href)
  const fromUrl = url.searchParams.get('apikey')
  if (fromUrl !== null) {
    url.searchParams.delete('apikey')
    window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash)
    if (fromUrl !== '') {
      sessionStorage.setItem(KEY_STORAGE, fromUrl)
      return fromUrl
    }
  }
  return sessionStorage.getItem(KEY_STORAGE)
}

export function forgetApiKey(): void {
  sessionStorage.removeItem(KEY_STORAGE)
}

/** A failed API call, carrying the backend's sentence and the HTTP status (0: no answer). */
export class ApiError extends Error {
  readonly status: number

  constructor(message: string, status: number) {
    super(message)
    this.name = 'ApiError'
    this.status = status
  }
}

export class Api {
  readonly #key: string

  constructor(key: string) {
    this.#key = key
  }

  /** EventSource cannot send headers, so the SSE stream takes the key in the query. */
  eventsUrl(): string {
    return `/events?apikey=${encodeURIComponent(this.#key)}`
  }

  status(): Promise<StatusData> {
    return this.#call<StatusData>('GET', '/api/v1/status')
  }

  listServers(): Promise<ServersData> {
    return this.#call<ServersData>('GET', '/api/v1/servers')
  }

  getServer(name: string): Promise<ServerStatus> {
    return this.#call<ServerStatus>('GET', `/api/v1/servers/${encodeURIComponent(name)}`)
  }

  login(name: string): Promise<LoginData> {
    return this.#call<LoginData>('POST', `/api/v1/servers/${encodeURIComponent(name)}/login`)
  }

  logout(name: string): Promise<LogoutData> {
    return this.#call<LogoutData>('POST', `/api/v1/servers/${encodeURIComponent(name)}/logout`)
  }

  logoutAll(): Promise<LogoutAllData> {
    return this.#call<LogoutAllData>('POST', '/api/v1/servers/logout')
  }

  refresh(name: string): Promise<RefreshData> {
    return this.#call<RefreshData>('POST', `/api/v1/servers/${encodeURIComponent(name)}/refresh`)
  }

  async #call<T>(method: 'GET' | 'POST', path: string): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json', 'X-API-Key': this.#key }
    const init: RequestInit = { method, headers, credentials: 'same-origin', cache: 'no-store' }
    if (method === 'POST') {
      headers['Content-Type'] = 'application/json'
      init.body = '{}'
    }
    let response: Response
    try {
      response = await fetch(path, init)
    } catch {
      throw new ApiError('The mcpproxy service did not answer. Is it still running?', 0)
    }
    let envelope: Envelope<T>
    try {
      envelope = (await response.json()) as Envelope<T>
    } catch {
      throw new ApiError(`The service answered HTTP ${response.status} without a JSON body.`, response.status)
    }
    if (envelope?.success === true && response.ok) return envelope.data
    const sentence = envelope?.success === false ? envelope.error : ''
    throw new ApiError(sentence || `The request failed with HTTP ${response.status}.`, response.status)
  }
}
